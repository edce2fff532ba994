"""The audit log: every `audit.events` message stored append-only in a hash chain."""

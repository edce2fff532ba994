"""Partner API keys: shown once, stored hashed, scoped to datasets and districts, with
expiry, rate limits, daily quotas and rotation."""

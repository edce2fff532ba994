"""Escalation: warnings before a deadline is missed and notices when it is, to the duty
contacts and webhooks; the notification log."""

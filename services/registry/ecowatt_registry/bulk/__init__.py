"""One enterprise with its whole archive in one request (one transaction)."""

"""Login, browser sessions, bearer tokens and their revocation."""

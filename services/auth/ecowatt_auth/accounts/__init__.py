"""Accounts: people, their role and data scope, password and second factor, lifecycle."""

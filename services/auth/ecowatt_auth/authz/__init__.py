"""Roles and the permission matrix: who may call which endpoint (one place, read by the
gateway, the documentation and the role × endpoint test)."""

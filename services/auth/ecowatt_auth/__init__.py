"""EcoWatt auth and gateway: owns users, roles, data scopes, API keys, sessions and the audit log;
the gateway every request passes (authentication, rate limits, audit, forwarding a signed
identity to the services).
"""

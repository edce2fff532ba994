"""EcoWatt ops: the platform's own health (service readiness, consumer lag, dead letters,
PostgreSQL, Redis, device links) for the web application's status page.
"""

"""The platform status: what the web application's status page shows."""

"""The gateway: one public entry for people, partners and the SPA (see `app.Gateway`)."""

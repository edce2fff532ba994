"""EcoWatt standalone mode."""

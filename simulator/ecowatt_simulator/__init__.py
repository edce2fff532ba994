"""EcoWatt device simulator."""

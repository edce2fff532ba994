"""EcoWatt shared kernel."""

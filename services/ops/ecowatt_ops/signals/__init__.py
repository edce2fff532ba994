"""Automatic incidents: the Alertmanager webhook receiver and the platform's own signals."""

"""Incidents (故障): opened by hand or from alerts and the platform's own signals; level,
timeline, SLA clocks, post-incident review."""

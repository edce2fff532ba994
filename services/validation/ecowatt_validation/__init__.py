"""EcoWatt validation (采集数据核查): owns binding readings to monitoring points, data-
quality state, archive-completeness and data-quality findings, daily per-point
aggregates.
"""

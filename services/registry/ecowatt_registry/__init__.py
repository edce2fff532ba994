"""EcoWatt registry (一企一档): owns the enterprise archive: enterprises, production
lines, production and control facilities, control groups (产治关系), monitoring
points, devices and thresholds, with the history of every change.
"""

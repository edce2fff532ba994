"""EcoWatt alarm: owns point and facility states, production–control correlation alarms, the alarm
handling journal, planned-outage filings and notifications.
"""

"""EcoWatt reporting: owns telemetry history and its rollups (15-minute, hourly, daily), report
definitions and the generated daily, weekly and monthly reports.
"""

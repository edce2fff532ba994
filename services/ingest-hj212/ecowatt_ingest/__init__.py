"""EcoWatt HJ 212 ingest: owns TCP sessions with devices (port 9212), device online state in
Redis, answers to devices after their frames are durable, reverse commands.
"""

"""Fault levels, request kinds and their clocks; China's working-day calendar."""

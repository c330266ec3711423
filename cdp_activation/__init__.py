"""Activation: segment audiences exported from the warehouse to the lake as Parquet, with their
day-to-day changes, and synced to the destinations declared in `destinations.yaml`."""

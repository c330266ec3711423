"""Schedules and sensors that start runs of the asset graph."""

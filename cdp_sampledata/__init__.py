"""Deterministic sample data with the dirt real sources have, and the ground truth beside it."""

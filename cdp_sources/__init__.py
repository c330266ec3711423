"""Managed sources: each tenant's declared Singer taps, installed and run by the platform into the raw zone."""

"""Configurable resources (lake storage, Spark with Delta, PostgreSQL) and their local defaults."""

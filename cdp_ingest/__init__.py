"""The ingestion edge: schema registry, raw batch writer, dead-letter zone, Singer target, file drops."""

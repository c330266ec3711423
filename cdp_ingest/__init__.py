"""The ingestion edge: schema registry, raw batch writer, Singer target, file drops, dead-letter reprocessing, webhooks."""

"""Spark transformations for the curated zone: typing, normalisation, deduplication, enrichment and
quality rules, each a small function on DataFrames, and the entity specs that combine them."""

"""The `cdp` command: sample data, the demo run, the Dagster UI, the embedded PostgreSQL, Spark's jars."""

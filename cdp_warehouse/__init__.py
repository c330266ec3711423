"""Loading the lake's Delta tables into PostgreSQL with COPY, one atomic swap per load."""

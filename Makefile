# The two commands: `make demo` (set up, generate sample data, materialise the graph) and
# `make test` (set up, run the test suite). Everything else is a helper.
.PHONY: demo test lint format setup dev dev-spark-server spark-server-stop postgres-stop lock bench-generator bench-ingest bench-curated bench-identity bench-warehouse bench-webhook bench-sources bench-backfill bench-rls bench-insights bench-predictions bench-api bench-forget

demo: setup
	.venv/bin/cdp demo

test: setup lint
	.venv/bin/pytest

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

format: setup
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

setup:
	bash scripts/setup.sh

dev: setup
	.venv/bin/cdp dev

dev-spark-server: setup
	.venv/bin/cdp dev --spark-server

spark-server-stop:
	.venv/bin/cdp spark-server stop

postgres-stop:
	.venv/bin/cdp postgres stop

lock:
	.venv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

bench-generator: setup
	.venv/bin/python bench/generator_throughput.py

bench-ingest: setup
	.venv/bin/python bench/ingest.py

bench-curated: setup
	.venv/bin/python bench/curated.py

bench-identity: setup
	.venv/bin/python bench/identity.py

bench-predictions: setup
	.venv/bin/python bench/predictions.py

bench-warehouse: setup
	.venv/bin/python bench/warehouse_load.py

bench-rls: setup
	.venv/bin/python bench/rls.py

bench-insights: setup
	.venv/bin/python bench/insights_detector.py

bench-api: setup
	.venv/bin/python bench/api.py

bench-webhook: setup
	.venv/bin/python bench/webhook.py

bench-sources: setup
	.venv/bin/python bench/sources.py

bench-backfill: setup
	.venv/bin/python bench/backfill.py

bench-forget: setup
	.venv/bin/python bench/forget.py

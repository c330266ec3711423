"""The insights assets in the real `lake_daily` run (`lake_daily_run`): the daily metrics agree with
the models and the lake they are counted from, the findings asset writes its table and digest, and
the OpenLineage sensor sends, to a local receiver, events that spell the lineage from a raw stream
through curated, warehouse and dbt to a segment, with schema, row-count and data-quality facets."""

import json
import threading
from collections import defaultdict
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import DagsterEventType, build_run_status_sensor_context

from cdp_insights.metrics import SCHEMA
from tests.conftest import LAKE_DAILY_CONFIG

FIRST = LAKE_DAILY_CONFIG.start
LAST = FIRST + timedelta(days=LAKE_DAILY_CONFIG.days - 1)


def _materialisations(result, node: str) -> list:
    return result.asset_materializations_for_node(node)


def test_daily_metrics_agree_with_the_models_and_the_dead_letters(lake_daily_run):
    result, warehouse = lake_daily_run["result"], lake_daily_run["warehouse"]
    assert _materialisations(result, "insights__daily_metrics")
    # The curated run's own count of each table's dead letters per day (every partition's event
    # carries the run's per-day figures).
    dead_lettered = {
        (day, m.asset_key.path[-1]): figures["dead_lettered"]
        for m in result.asset_materializations_for_node("curated_tables")
        for day, figures in m.metadata["per_day"].value.items()
        if figures["dead_lettered"]
    }
    with warehouse.connect() as conn:
        metrics = {
            (str(day), metric, dimension, member): value
            for day, metric, dimension, member, value in conn.execute(
                f"SELECT day, metric, dimension, member, value FROM {SCHEMA}.daily_metrics WHERE tenant_id = 'acme_corp'"
            )
        }
        orders = dict(
            conn.execute(
                "SELECT order_date::text, count(*) FROM intermediate.int_customer_orders GROUP BY 1"
            ).fetchall()
        )
        devices = dict(
            conn.execute(
                "SELECT event_day::text, count(DISTINCT anonymous_id) FROM marts.fct_events GROUP BY 1"
            ).fetchall()
        )
        sizes = dict(
            conn.execute(
                "SELECT segment, count(*) FROM segments.segment_membership WHERE as_of_date = %s GROUP BY 1", (LAST,)
            ).fetchall()
        )
    days = sorted({day for day, *_ in metrics})
    assert days == [FIRST.isoformat(), LAST.isoformat()]
    for day in days:
        assert metrics[(day, "orders", "total", "all")] == orders[day] > 0
        by_country = sum(v for (d, m, dim, _), v in metrics.items() if (d, m, dim) == (day, "orders", "country"))
        assert by_country == orders[day]
        assert 0 <= metrics[(day, "conversion", "total", "all")] <= 1
        assert metrics[(day, "sessions", "total", "all")] == devices[day] > 0
        scores = [v for (d, m, *_), v in metrics.items() if (d, m) == (day, "quality_score")]
        assert scores and all(0 < s <= 1 for s in scores)
    # Every record the curated run dead-lettered is counted once: by source, by rule and in the total.
    by_source = {(d, member): v for (d, m, dim, member), v in metrics.items() if (m, dim) == ("dead_letters", "source")}
    assert by_source == dead_lettered and dead_lettered
    for dimension in ("total", "rule", "source,rule"):
        counted = sum(v for (_, m, dim, _), v in metrics.items() if (m, dim) == ("dead_letters", dimension))
        assert counted == sum(dead_lettered.values()), dimension
    assert {
        member: v for (d, m, _, member), v in metrics.items() if (d, m) == (LAST.isoformat(), "segment_size")
    } == sizes


def test_findings_asset_writes_its_table_and_a_digest(lake_daily_run):
    result, warehouse = lake_daily_run["result"], lake_daily_run["warehouse"]
    (*_, findings) = _materialisations(result, "insights__findings")
    digest = findings.metadata["digest"].value
    # Two days are too short a history to judge (14 days are needed): no findings, but the movements.
    assert digest.startswith(f"## Insights for {FIRST}–{LAST}") and "No anomalies found." in digest
    assert "### Largest segment movements" in digest and findings.metadata["dagster/row_count"].value == 0
    with warehouse.connect() as conn:
        assert conn.execute(f"SELECT count(*) FROM {SCHEMA}.findings").fetchone() == (0,)


class _LineageReceiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.events.append((self.path, json.loads(body)))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def lineage_receiver(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LineageReceiver)
    server.lock, server.events = threading.Lock(), []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{server.server_port}")
    yield server
    server.shutdown()
    server.server_close()


def _success_context(lake_daily_run, instance, name: str):
    from cdp_assets.definitions import defs

    run_id = lake_daily_run["result"].run_id
    (success,) = instance.all_logs(run_id, of_type=DagsterEventType.RUN_SUCCESS)
    return build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=success.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        repository_def=defs.get_repository_def(),
    )


def _path(edges: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A path from `start` to `goal` along the lineage edges (breadth first)."""
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        if path[-1] == goal:
            return path
        for nxt in sorted(edges[path[-1]] - seen):
            seen.add(nxt)
            paths.append([*path, nxt])
    return None


def test_openlineage_events_spell_the_lineage_from_a_raw_stream_to_a_segment(
    lake_daily_run, dagster_instance, lineage_receiver
):
    from sensors.run_events import openlineage_on_success

    openlineage_on_success(_success_context(lake_daily_run, dagster_instance, "openlineage_on_success"))

    events = [event for path, event in lineage_receiver.events if path == "/api/v1/lineage"]
    materialised = {e.asset_key.to_user_string() for e in lake_daily_run["result"].get_asset_materialization_events()}
    assert {e["job"]["name"] for e in events} == materialised and len(events) == len(materialised)
    assert {e["eventType"] for e in events} == {"COMPLETE"}
    edges = defaultdict(set)
    for event in events:
        (output,) = event["outputs"]
        assert output["name"] == event["job"]["name"] and event["run"]["facets"]["parent"]["run"]["runId"]
        for source in event["inputs"]:
            edges[source["name"]].add(output["name"])
    loaded = _path(edges, "raw/shopify/orders", "warehouse/orders")
    modelled = _path(edges, "warehouse/orders", "segments/segment_membership")
    assert loaded == ["raw/shopify/orders", "curated/orders", "warehouse/orders"]
    layers = [step.split("/")[0] for step in modelled]
    assert layers[1] == "staging" and layers[-2:] == ["segments", "segments"] and "marts" in layers, modelled

    by_name = {e["job"]["name"]: e["outputs"][0] for e in events}
    warehouse_orders = by_name["warehouse/orders"]
    assert warehouse_orders["outputFacets"]["outputStatistics"]["rowCount"] > 0
    columns = {f["name"] for f in by_name["marts/customer_360"]["facets"]["schema"]["fields"]}
    assert {"cdp_customer_id", "lifetime_revenue_usd"} <= columns
    assertions = by_name["curated/orders"]["facets"]["dataQualityAssertions"]["assertions"]
    assert assertions and all(a["success"] for a in assertions)


def test_openlineage_is_off_unless_configured(lake_daily_run, dagster_instance, monkeypatch):
    from sensors.run_events import openlineage_on_success

    monkeypatch.delenv("OPENLINEAGE_URL", raising=False)
    monkeypatch.delenv("OPENLINEAGE_CONFIG", raising=False)
    skipped = openlineage_on_success(_success_context(lake_daily_run, dagster_instance, "openlineage_on_success"))
    assert "not configured" in skipped.skip_message

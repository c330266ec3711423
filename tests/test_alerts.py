"""Alerts by the alerts file, through the real sensors on real runs of the graph, to a local HTTP
receiver (a Slack-compatible webhook and a signed generic one) and a local SMTP server (aiosmtpd):
each incident arrives once per channel (again within the window: not sent again), a channel that
fails is retried with backoff, and what cannot be delivered is kept and sent on the next round.
No message holds personal data."""

import json
import os
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from aiosmtpd.controller import Controller
from dagster import DagsterEventType, build_run_status_sensor_context

from cdp_common.signatures import verify_timestamped
from cdp_insights.alerts import AlertsFileError, load_alerts
from cdp_insights.anomalies import detect
from cdp_insights.findings import store
from cdp_insights.notify import SCHEMA
from cdp_resources.lake import LakeResource
from cdp_resources.local_ports import free_port
from cdp_resources.raw_zone import decode_ndjson_gz
from cdp_resources.warehouse import WarehouseResource
from tests.conftest import LAKE_DAILY_CONFIG, run_assets

SECRET = "alert-s3cret"
LAST = LAKE_DAILY_CONFIG.start + timedelta(days=LAKE_DAILY_CONFIG.days - 1)


class _Receiver(BaseHTTPRequestHandler):
    """/slack and /hook record what arrives; /down answers 503 until `server.down` is cleared."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            if self.path == "/down" and self.server.down:
                self.server.refused += 1
                status = 503
            else:
                if self.path == "/hook":
                    verify_timestamped(
                        self.headers.get("X-CDP-Signature"), "X-CDP-Signature", body, SECRET.encode(), time.time(), 300
                    )
                self.server.received.append((self.path, json.loads(body)))
                status = 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture
def receivers(tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.lock, server.received, server.down, server.refused = threading.Lock(), [], True, 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mailbox = _Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    base = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("CDP_TEST_SLACK_URL", f"{base}/slack")
    monkeypatch.setenv("CDP_TEST_ALERT_SECRET", SECRET)
    alerts = {
        "dedup_minutes": 60,
        "retries": 2,
        "backoff_seconds": 0.05,
        "channels": {
            "ops_slack": {"type": "slack", "url_env": "CDP_TEST_SLACK_URL"},
            "ops_hook": {"type": "webhook", "url": f"{base}/hook", "secret_env": "CDP_TEST_ALERT_SECRET"},
            "ops_mail": {
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp.port,
                "sender": "cdp@example.org",
                "to": ["ops@example.org"],
            },
            "pager": {"type": "slack", "url": f"{base}/down"},
        },
        "rules": [
            {"rule": "run_failure", "channels": ["ops_slack", "ops_mail"]},
            {"rule": "dead_letters", "threshold": 0, "channels": ["ops_hook"]},
            {"rule": "schema_drift", "channels": ["ops_slack"]},
            {"rule": "finding", "severity": "high", "channels": ["ops_mail", "pager"]},
        ],
    }
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(alerts))
    monkeypatch.setenv("CDP_ALERTS_FILE", str(path))
    yield server, mailbox
    smtp.stop()
    server.shutdown()
    server.server_close()


def _context(instance, run_id: str, event_type: DagsterEventType, name: str):
    from cdp_assets.definitions import defs

    (event,) = instance.all_logs(run_id, of_type=event_type)
    return build_run_status_sensor_context(
        sensor_name=name,
        dagster_event=event.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        repository_def=defs.get_repository_def(),
    )


def _personal_data(lake) -> set[str]:
    people = decode_ndjson_gz(lake.read_bytes("truth/acme_corp/persons.ndjson.gz"))
    return {p["email"] for p in people} | {p["phone_e164"] for p in people if p.get("phone_e164")}


def _high_finding(warehouse: WarehouseResource) -> None:
    """A real finding of the detector on the run's last day: a flat fortnight of revenue, then a collapse."""
    rows = [
        {
            "tenant_id": "acme_corp",
            "day": LAST - timedelta(days=n),
            "metric": "revenue_usd",
            "dimension": "total",
            "member": "all",
            "value": 1000.0 + n % 3,
        }
        for n in range(1, 20)
    ] + [
        {
            "tenant_id": "acme_corp",
            "day": LAST,
            "metric": "revenue_usd",
            "dimension": "total",
            "member": "all",
            "value": 100.0,
        }
    ]
    (finding,) = detect(rows, [LAST], set(), set())
    assert finding.severity == "high"
    with warehouse.connect() as conn:
        store(conn, [finding], LAST, LAST)
        conn.commit()


def test_a_run_raises_each_alert_once_per_channel_and_keeps_what_it_cannot_deliver(
    lake_daily_run, dagster_instance, receivers
):
    server, mailbox = receivers
    warehouse = lake_daily_run["warehouse"]
    _high_finding(warehouse)
    try:
        _alert_once_and_keep(lake_daily_run, dagster_instance, server, mailbox, warehouse)
    finally:  # the run's own findings again (none), for the other tests of the shared run
        with warehouse.connect() as conn:
            store(conn, [], LAST, LAST)


def _alert_once_and_keep(lake_daily_run, dagster_instance, server, mailbox, warehouse) -> None:
    from sensors.run_events import alerts_on_success

    context = _context(
        dagster_instance, lake_daily_run["result"].run_id, DagsterEventType.RUN_SUCCESS, "alerts_on_success"
    )

    alerts_on_success(context, warehouse=warehouse)

    received = Counter(
        (path, body["incident"] if path == "/hook" else body["text"].split("\n")[0]) for path, body in server.received
    )
    assert received and max(received.values()) == 1
    hooks = [body for path, body in server.received if path == "/hook"]
    with warehouse.connect() as conn:
        expected = {
            f"dead_letters:{tenant}:{source}:{day}"
            for tenant, day, source in conn.execute(
                "SELECT tenant_id, day, member FROM insights.daily_metrics WHERE metric = 'dead_letters' "
                "AND dimension = 'source' AND value > 0"
            )
        }
    assert {h["incident"] for h in hooks} == expected and expected
    drift = [body["text"] for path, body in server.received if path == "/slack"]
    assert drift and all("New field" in text for text in drift)
    (mail,) = mailbox.messages
    assert "revenue_usd anomaly for acme_corp" in mail and "Subject: [CDP high]" in mail
    assert server.refused == 3  # the pager: one attempt and two retries, all refused
    with warehouse.connect() as conn:
        kept = conn.execute(
            f"SELECT channel, status, attempts FROM {SCHEMA}.notifications WHERE status <> 'delivered'"
        ).fetchall()
    assert kept == [("pager", "undeliverable", 3)]
    everything = json.dumps(server.received) + "".join(mailbox.messages)
    assert not [value for value in _personal_data(lake_daily_run["lake"]) if value in everything]

    # The same run looked at again within the window: nothing new is sent, and the pager, back up,
    # gets the kept notification.
    server.down, sent_before, mails_before = False, len(server.received), len(mailbox.messages)
    alerts_on_success(context, warehouse=warehouse)
    assert [path for path, _ in server.received[sent_before:]] == ["/down"]
    assert len(mailbox.messages) == mails_before
    with warehouse.connect() as conn:
        assert conn.execute(f"SELECT count(*) FROM {SCHEMA}.notifications WHERE status <> 'delivered'").fetchone() == (
            0,
        )


def test_a_failed_run_is_alerted_once_without_its_error_text(dagster_instance, postgres, receivers, tmp_path):
    from sensors.run_events import alerts_on_failure

    server, mailbox = receivers
    unreachable = WarehouseResource(url=f"postgresql://nobody:secret@127.0.0.1:{free_port()}/none")
    result = run_assets(
        LakeResource(base_uri=str(tmp_path / "lake")),
        dagster_instance,
        LAST,
        LAST,
        selection=["insights/daily_metrics"],
        raise_on_error=False,
        warehouse=unreachable,
    )
    assert not result.success
    alerts = WarehouseResource(url=_alerts_database(postgres))
    context = _context(dagster_instance, result.run_id, DagsterEventType.RUN_FAILURE, "alerts_on_failure")
    for _ in range(2):
        alerts_on_failure(context.for_run_failure(), warehouse=alerts)
    (slack,) = [body["text"] for path, body in server.received if path == "/slack"]
    (mail,) = mailbox.messages
    assert "Run of test_run failed" in slack and result.run_id in slack and "insights__daily_metrics" in slack
    assert "Error type: OperationalError" in slack and "secret" not in slack + mail and "nobody" not in slack + mail


def test_a_failed_blocking_check_is_alerted(dagster_instance, postgres, receivers, tmp_path, monkeypatch):
    """segment_membership's blocking check (every member is in customer_360) fails on a member who is not."""
    from sensors.run_events import alerts_on_failure, alerts_on_success

    server, _ = receivers
    alerts = yaml.safe_load(Path(os.environ["CDP_ALERTS_FILE"]).read_text())
    alerts["rules"] = [{"rule": "check_failure", "channels": ["ops_slack"]}]
    (tmp_path / "checks.yaml").write_text(yaml.safe_dump(alerts))
    monkeypatch.setenv("CDP_ALERTS_FILE", str(tmp_path / "checks.yaml"))
    warehouse = WarehouseResource(url=_alerts_database(postgres))
    with warehouse.connect() as conn:
        conn.execute("CREATE SCHEMA marts; CREATE TABLE marts.customer_360 (tenant_id text, cdp_customer_id text)")
        conn.execute(
            "CREATE SCHEMA segments; CREATE TABLE segments.segment_membership (tenant_id text, segment text, "
            "cdp_customer_id text, as_of_date date, source_model text); "
            "INSERT INTO segments.segment_membership VALUES ('acme_corp', 'vip', 'c_nobody', '2026-01-02', 'm')"
        )
    result = run_assets(
        LakeResource(base_uri=str(tmp_path / "lake")),
        dagster_instance,
        LAST,
        LAST,
        selection=["segments/segment_membership"],
        raise_on_error=False,
        warehouse=warehouse,
        only_checks=True,
    )
    (evaluation,) = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert not evaluation.passed
    if result.success:
        alerts_on_success(
            _context(dagster_instance, result.run_id, DagsterEventType.RUN_SUCCESS, "s"), warehouse=warehouse
        )
    else:
        context = _context(dagster_instance, result.run_id, DagsterEventType.RUN_FAILURE, "f")
        alerts_on_failure(context.for_run_failure(), warehouse=warehouse)
    (text,) = [body["text"] for path, body in server.received if path == "/slack"]
    assert "Blocking check members_are_customers failed on segments/segment_membership" in text
    assert "c_nobody" not in text


def _alerts_database(postgres) -> str:
    from tests.webhook_support import fresh_database

    return fresh_database(postgres)


def test_an_alerts_file_naming_an_unknown_channel_is_refused(tmp_path):
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump({"channels": {}, "rules": [{"rule": "run_failure", "channels": ["nowhere"]}]}))
    with pytest.raises(AlertsFileError, match=r"unknown channels \['nowhere'\]"):
        load_alerts(path)
    path.write_text(yaml.safe_dump({"rules": [{"rule": "dead_letters", "channels": []}]}))
    with pytest.raises(AlertsFileError, match="at least 1 item"):
        load_alerts(path)
    assert load_alerts(tmp_path / "absent.yaml") is None

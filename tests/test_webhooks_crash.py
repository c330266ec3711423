"""Crash test: under load, the receiver and the batcher (separate processes) are killed with
SIGKILL and restarted; every event that got a 2xx ends up in the raw zone exactly once."""

import threading
import time
from collections import Counter

import pytest
import requests

from cdp_resources.lake import LakeResource
from tests.webhook_support import (
    Process,
    Service,
    app,
    app_event,
    fresh_database,
    queued_rows,
    raw_records,
    secrets_file,
)


class Provider(threading.Thread):
    """Sends events one after another, retrying each until it gets a 2xx (as providers do)."""

    def __init__(self, base: str, name: str, stop: threading.Event, paused: threading.Event):
        super().__init__(daemon=True)
        self.base, self.name_, self.stop, self.paused = base, name, stop, paused
        self.sent, self.acked = [], []

    def run(self) -> None:
        session = requests.Session()
        number = 0
        while not self.stop.is_set():
            while self.paused.is_set() and not self.stop.is_set():
                time.sleep(0.01)
            message_id = f"{self.name_}-{number}"
            self.sent.append(message_id)
            while not self.stop.is_set():
                try:
                    event = app_event(message_id) | {"timestamp": f"2026-01-0{1 + number % 4}T09:30:00Z"}
                    body, headers = app("acme", event)  # four event days: four files per batch
                    response = session.post(f"{self.base}/webhooks/acme/app", data=body, headers=headers, timeout=5)
                    if response.status_code == 200:
                        self.acked.append(message_id)
                        break
                except requests.RequestException:
                    session = requests.Session()
                    time.sleep(0.05)
            number += 1


@pytest.mark.slow
def test_kill_9_receiver_and_batcher_under_load(postgres, s3_bucket, s3_endpoint, tmp_path):
    # The lake on moto's S3: each file is an HTTP PUT, so a kill often lands mid-flush.
    url, lake = fresh_database(postgres), LakeResource(base_uri=f"s3://{s3_bucket}/lake", s3_endpoint_url=s3_endpoint)
    env = {
        "CDP_S3_ENDPOINT_URL": s3_endpoint,
        "CDP_POSTGRES_URL": url,
        "CDP_WEBHOOK_SECRETS_FILE": str(secrets_file(tmp_path)),
        "CDP_WEBHOOK_RATE": "100000",
        "CDP_WEBHOOK_BURST": "100000",
        "CDP_WEBHOOK_MAX_RECORDS": "40",
        "CDP_WEBHOOK_MAX_AGE_SECONDS": "0.2",
    }
    service = Service(env, tmp_path / "receiver.log").start()
    batcher = Process(["batch", "--lake", lake.base_uri, "--poll", "0.05"], env, tmp_path / "batcher.log").start()
    batcher.wait_for_log("flushing every", 1)
    stop, paused = threading.Event(), threading.Event()
    providers = [Provider(service.url, f"p{n}", stop, paused) for n in range(4)]

    def kill_batcher_mid_flush(restarts: int) -> None:
        batcher.wait_for_log("landed", batcher.log_lines("landed") + 5)  # it is flushing now
        batcher.kill()
        paused.set()  # the load pauses while the batcher starts again (its imports take seconds on a busy machine)
        batcher.start()
        batcher.wait_for_log("flushing every", restarts + 1)
        paused.clear()

    try:
        for provider in providers:
            provider.start()
        kill_batcher_mid_flush(1)
        service.kill()
        time.sleep(0.3)
        service.start()
        kill_batcher_mid_flush(2)
        service.kill()
        service.start()
        batcher.wait_for_log("landed", batcher.log_lines("landed") + 5)
    finally:
        stop.set()
        for provider in providers:
            provider.join(10)
    try:
        deadline = time.monotonic() + 60
        while queued_rows(url, "acme") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert queued_rows(url, "acme") == 0
    finally:
        batcher.stop()
        service.stop()

    acked = [m for provider in providers for m in provider.acked]
    sent = {m for provider in providers for m in provider.sent}
    landed = Counter(record["message_id"] for record in raw_records(lake, "acme", "app"))
    print(f"{len(acked)} acknowledged, {len(sent)} sent, {sum(landed.values())} landed")
    assert len(acked) >= 200
    assert [m for m, count in landed.items() if count > 1] == []
    assert set(acked) <= set(landed)
    assert set(landed) <= sent

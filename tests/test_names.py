"""Tenant, provider and stream names follow one rule at every entry: the webhook URL and its
secrets, the Singer target's arguments and stream names, file drops, dead-letter reprocessing and
the `cdp` command. Path-like, empty and SQL-ish names are refused with a clear error before they
reach a path, a statement or a queue."""

import http.client
import io
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from cdp_cli.main import main as cdp_main
from cdp_ingest import singer_target
from cdp_ingest.file_drops import process_drops
from cdp_ingest.registry import SchemaRegistry
from cdp_ingest.reprocess import reprocess
from cdp_ingest.webhooks.config import Secrets
from cdp_resources.lake import LakeResource
from cdp_resources.names import InvalidName, checked_name
from tests.webhook_support import Service, app, app_event, fresh_database, queued_rows, secrets_file

TARGET = str(Path(sys.executable).parent / "cdp-target")
BAD_NAMES = ["../x", "a/b", "", "x'; DROP TABLE t; --", "Acme", "a" * 64, "1st"]


def test_the_rule_accepts_the_names_in_use_and_refuses_the_rest():
    for name in ["acme_corp", "globex", "shopify", "salesforce", "app", "orders", "results", "a" * 63]:
        assert checked_name("tenant", name) == name
    for name in [*BAD_NAMES, None, 5, "orders\n", "é"]:
        with pytest.raises(InvalidName, match="is not allowed: use a lower-case letter"):
            checked_name("stream", name)


@pytest.fixture(scope="module")
def receiver(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("webhook_names")
    url = fresh_database(postgres)
    service = Service(
        {"CDP_POSTGRES_URL": url, "CDP_WEBHOOK_SECRETS_FILE": str(secrets_file(root))}, root / "receiver.log"
    ).start()
    yield service, url
    service.stop()


def _post_raw(port: int, path: str, signed: tuple[bytes, dict]) -> tuple[int, dict]:
    """POST with the path exactly as given (requests would resolve `..` before sending)."""
    body, headers = signed
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_webhook_url_names_are_refused(receiver, name):
    service, url = receiver
    signed = app("acme", app_event("n-1"))
    for path in (f"/webhooks/{quote(name, safe='')}/app", f"/webhooks/acme/{quote(name, safe='')}"):
        status, answer = _post_raw(service.port, path, signed)
        if "/" in name or not name:  # never routed: the path has another number of segments
            assert (status, answer["error"]) == (404, "not_found"), (path, answer)
        else:
            assert (status, answer["error"]) == (400, "invalid_name"), (path, answer)
            assert "is not allowed" in answer["message"]
    assert queued_rows(url, "acme") == 0


def test_webhook_secrets_with_bad_names_are_refused_at_start(tmp_path):
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"../x": {"app": "s"}}))
    with pytest.raises(InvalidName, match="tenant name '../x'"):
        Secrets.load({"CDP_WEBHOOK_SECRETS_FILE": str(path)})
    with pytest.raises(InvalidName, match="provider name 'a-b'"):
        Secrets.load({"CDP_WEBHOOK_SECRET__ACME__A-B": "s"})


def _usage_error(main, argv: list[str], capsys) -> str:
    """What a command's argument parser prints when it refuses `argv` (exit status 2)."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_singer_target_arguments_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO()))  # a tap that sends nothing
    lake = ["--lake", str(tmp_path / "lake")]
    for name in BAD_NAMES[:4]:
        for args in (["--tenant", name, "--provider", "shopify"], ["--tenant", "acme_corp", "--provider", name]):
            assert "is not allowed" in _usage_error(singer_target.main, [*args, *lake], capsys)
        config = tmp_path / "target.json"
        config.write_text(json.dumps({"tenant": name, "provider": "shopify", "lake_uri": str(tmp_path / "lake")}))
        assert "tenant name" in _usage_error(singer_target.main, ["--config", str(config)], capsys)
    process = subprocess.run(  # the installed command, as a tap's pipeline runs it
        [TARGET, "--tenant", "../x", "--provider", "shopify", *lake], input="", capture_output=True, text=True
    )
    assert process.returncode == 2 and "tenant name '../x' is not allowed" in process.stderr, process.stderr
    assert not (tmp_path / "lake").exists()


def test_singer_stream_names_are_refused(tmp_path):
    messages = []
    for name in BAD_NAMES[:4]:
        messages += [
            {"type": "SCHEMA", "stream": name, "schema": {"type": "object"}, "key_properties": []},
            {"type": "RECORD", "stream": name, "record": {"id": 1}},
        ]
    messages.append({"type": "STATE", "value": {"n": 1}})
    result = subprocess.run(
        [TARGET, "--tenant", "acme_corp", "--provider", "shopify", "--lake", str(tmp_path / "lake")],
        input="".join(json.dumps(m) + "\n" for m in messages),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    keys = [obj.key for obj in lake.list("")]
    assert keys and all(key.startswith("dlq/acme_corp/shopify/invalid_name/_unknown/day=") for key in keys), keys
    assert result.stdout.strip() == json.dumps({"type": "STATE", "value": {"n": 1}})


def test_file_drops_under_bad_names_are_refused(any_lake):
    good = b'{"id": 1, "updated_at": "2026-01-05T12:00:00Z"}\n'
    drops = {
        "drops/Acme/shopify/customers/a.jsonl": "tenant name 'Acme'",
        "drops/acme_corp/x'; DROP TABLE t; --/customers/a.jsonl": 'provider name "x\'; DROP TABLE t; --"',
        "drops/acme_corp/shopify/a b/a.jsonl": "stream name 'a b'",
    }
    if any_lake.is_s3:  # object keys can hold what a directory cannot
        drops |= {"drops/../shopify/customers/a.jsonl": "tenant name '..'"}
    for key in drops:
        any_lake.write_bytes(key, good)
    any_lake.write_bytes("drops/acme_corp/shopify/a/b/a.jsonl", good)  # not the drop layout: never read
    outcomes = {outcome.key: outcome for outcome in process_drops(any_lake, any_lake, SchemaRegistry())}
    assert set(outcomes) == set(drops)
    for key, message in drops.items():
        assert outcomes[key].error.startswith(message) and "is not allowed" in outcomes[key].error
        assert (outcomes[key].records, outcomes[key].landed, outcomes[key].dead_lettered) == (0, 0, 0)
    assert list(any_lake.list("raw/")) == [] and list(any_lake.list("dlq/")) == []
    assert process_drops(any_lake, any_lake, SchemaRegistry()) == []  # each refusal is recorded once


@pytest.mark.parametrize("name", BAD_NAMES[:4])
def test_dlq_reprocess_refuses_bad_names(tmp_path, name):
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    for kind, args in [("tenant", (name, "shopify")), ("provider", ("acme_corp", name))]:
        with pytest.raises(InvalidName, match=f"{kind} name"):
            reprocess(lake, SchemaRegistry(), *args)
    with pytest.raises(InvalidName, match="stream name"):
        reprocess(lake, SchemaRegistry(), "acme_corp", "shopify", stream=name)


def test_cdp_command_refuses_bad_names(tmp_path, capsys):
    for name in BAD_NAMES[:4]:
        commands = [
            ["dlq", "reprocess", "--tenant", name, "--provider", "shopify"],
            ["dlq", "reprocess", "--tenant", "acme_corp", "--provider", name],
            ["dlq", "reprocess", "--tenant", "acme_corp", "--provider", "shopify", "--stream", name],
            ["dlq", "reprocess", "--tenant", "acme_corp", "--provider", "shopify", "--error-type", name],
            ["generate", "--tenants", f"acme_corp,{name}", "--days", "1", "--customers", "10"],
        ]
        for command in commands:
            error = _usage_error(cdp_main, [*command, "--lake", str(tmp_path / "lake")], capsys)
            assert "is not allowed" in error, (command, error)
    assert not (tmp_path / "lake").exists()

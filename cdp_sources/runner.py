"""Run one declared source: its tap piped into the platform's Singer target, in this process.

    tap --config … --catalog … --state <bookmark>  ──stdout──▶  SingerTarget ──▶ raw zone
                                                    ◀─STATE──  (echoed once durable) → cdp_sources.bookmarks

The tap runs in its own process group with the source's deadline; past it the group is killed
and the run fails, and the next run resumes from the last bookmark the target echoed (every STATE
is saved as it comes, so a tap killed half-way loses nothing either). Tap streams are renamed to
their registry streams on the way in. A failed attempt is retried with exponential backoff, except
an authentication failure (the source's patterns over the tap's stderr), which pauses the source
until its config changes. The tap's stderr is kept only as the last few lines that look like log
lines, with anything shaped like an email or a phone number masked, since taps log record values.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from cdp_ingest.raw_writer import RawBatchWriter
from cdp_ingest.registry import SchemaRegistry
from cdp_ingest.singer_target import SingerTarget
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import MAX_RECORDS_PER_FILE
from cdp_sources.declarations import SecretReferenceError, Source, expand_config
from cdp_sources.state import Pause, SourceSession, source_session
from cdp_sources.taps import ensure_tap

STDERR_LINES = 20
STDERR_LINE_CHARS = 300
# Lines a logger wrote: a level name near the start (`INFO …`, `2026-… WARNING …`, `level=ERROR`).
LOG_LINE = re.compile(r"^.{0,60}?\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"\+?\d[\d ().-]{7,}\d")


@dataclass
class RunReport:
    """What a run did, for the asset's metadata (no record values)."""

    attempts: int = 0
    exit_code: int | None = None
    duration_seconds: float = 0.0
    received: Counter = field(default_factory=Counter)  # registry stream -> records read from the tap
    bytes: Counter = field(default_factory=Counter)  # registry stream -> bytes of those records
    landed: Counter = field(default_factory=Counter)  # registry stream -> records published to raw files
    dead_letters: Counter = field(default_factory=Counter)  # rule -> records
    files: int = 0
    bookmark: dict | None = None
    stderr_tail: list[str] = field(default_factory=list)


class SourceRunError(RuntimeError):
    """A run that did not complete; `report` holds what it did before it stopped."""

    def __init__(self, message: str, report: RunReport):
        super().__init__(message)
        self.report = report


class SourcePaused(SourceRunError):
    """The source is paused after an authentication failure; it runs again once its config changes."""


class TapTimeout(SourceRunError):
    """The tap ran past the source's timeout and was killed."""


class TapFailed(SourceRunError):
    """The tap (or its discovery) exited with an error; `auth_failure` says why if it was a refused login."""

    def __init__(self, message: str, report: RunReport, auth_failure: str | None = None):
        super().__init__(message, report)
        self.auth_failure = auth_failure


class _BookmarkSink:
    """The target's STATE output: each STATE (printed once its records are durable) becomes the bookmark."""

    def __init__(self, session: SourceSession, report: RunReport):
        self.session, self.report = session, report

    def write(self, text: str) -> None:
        for line in text.splitlines():
            value = json.loads(line).get("value") if line.strip() else None
            if value is not None:
                self.session.save_bookmark(value)
                self.report.bookmark = value

    def flush(self) -> None:
        pass


class _Stderr:
    """Reads the tap's stderr: notes an authentication failure, keeps a tail of masked log lines."""

    def __init__(self, stream: IO[bytes], auth_patterns: list[str]):
        self.patterns = [re.compile(pattern) for pattern in auth_patterns]
        self.auth_failure: str | None = None
        self.tail: deque[str] = deque(maxlen=STDERR_LINES)
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            if self.auth_failure is None:
                matched = next((p.pattern for p in self.patterns if p.search(line)), None)
                if matched:
                    self.auth_failure = f"authentication failure: the tap's error output matched '{matched}'"
            if LOG_LINE.match(line):
                masked = PHONE.sub("<phone>", EMAIL.sub("<email>", line))
                self.tail.append(masked[:STDERR_LINE_CHARS])


class _Tap:
    """The tap's process in its own group, killed with the whole group at the deadline."""

    def __init__(self, command: list[str], cwd: Path, deadline: float, auth_patterns: list[str]):
        self.timed_out = False
        self.process = subprocess.Popen(
            command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        self.stderr = _Stderr(self.process.stderr, auth_patterns)
        self.timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._kill)
        self.timer.daemon = True
        self.timer.start()

    def _kill(self) -> None:
        self.timed_out = True
        self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self) -> int:
        code = self.process.wait()
        self.timer.cancel()
        self.stderr.thread.join(timeout=5)
        # The group may hold the tap's children (a shell, a driver): none outlives the run.
        self.kill()
        return code


def registry_names(catalog: dict, source: Source) -> dict[str, str]:
    """Tap stream (by id, and by the name its messages carry) -> registry stream."""
    renames = {tap_stream: mapping.stream for tap_stream, mapping in source.streams.items()}
    for stream in catalog.get("streams", []):
        if stream.get("tap_stream_id") in source.streams and stream.get("stream"):
            renames[stream["stream"]] = renames[stream["tap_stream_id"]]
    return renames


class _Renamed:
    """Parses each of the tap's lines and names each mapped stream as its registry stream, counting
    records per stream (bytes as the tap wrote them); a line that is not a message stays as received."""

    def __init__(self, renames: dict[str, str], report: RunReport):
        self.renames, self.report = renames, report

    def __call__(self, raw: bytes) -> bytes | dict:
        try:
            message = orjson.loads(raw)
            stream = message.get("stream")
        except (orjson.JSONDecodeError, AttributeError):
            return raw  # the target dead-letters what is not a message, bytes as received
        if stream in self.renames:
            message["stream"] = stream = self.renames[stream]
        if message.get("type") == "RECORD":
            self.report.received[stream] += 1
            self.report.bytes[stream] += len(raw) + 1  # and its newline
        return message


def selected_catalog(catalog: dict, source: Source) -> dict:
    """The discovered catalog with the source's streams selected (Singer metadata), the others not."""
    found = {stream.get("tap_stream_id") or stream.get("stream") for stream in catalog.get("streams", [])}
    missing = sorted(set(source.streams) - found)
    if missing:
        raise ValueError(f"the tap's catalog has no stream {missing} (it has {sorted(found)})")
    for stream in catalog["streams"]:
        mapping = source.streams.get(stream.get("tap_stream_id") or stream.get("stream"))
        entries = stream.setdefault("metadata", [])
        top = next((entry for entry in entries if entry.get("breadcrumb") == []), None)
        if top is None:
            top = {"breadcrumb": [], "metadata": {}}
            entries.append(top)
        top["metadata"]["selected"] = mapping is not None
        stream["selected"] = mapping is not None  # older taps read the stream-level flag
        if mapping and mapping.replication_method:
            top["metadata"]["replication-method"] = mapping.replication_method
            stream["replication_method"] = mapping.replication_method
        if mapping and mapping.replication_key:
            top["metadata"]["replication-key"] = mapping.replication_key
            stream["replication_key"] = mapping.replication_key
    return catalog


def still_paused(source: Source, pause: Pause, config: dict | None = None) -> bool:
    """Whether `pause` still holds: the source's config (expanded) is the one that was refused."""
    try:
        config = expand_config(source.config) if config is None else config
    except SecretReferenceError:
        return False  # a run will fail on the reference, with its own clear error
    return source.same_fingerprint(config, pause.salt, pause.fingerprint)


def run_source(
    source: Source,
    lake: LakeResource,
    dsn: str,
    registry: SchemaRegistry | None = None,
    taps_root: Path | None = None,
    max_records: int = MAX_RECORDS_PER_FILE,
    max_age_seconds: float = 300.0,
) -> RunReport:
    """Run `source` once (with its retries); raises a `SourceRunError` carrying the report if it does not complete."""
    report, started = RunReport(), time.monotonic()
    config = expand_config(source.config, f"{source.key}.config")
    with source_session(dsn, source.tenant, source.name) as session:
        pause = session.pause()
        if pause and still_paused(source, pause, config):
            raise SourcePaused(f"source {source.key} is paused: {pause.reason}; change its config to resume", report)
        if pause:
            session.clear_pause()
        command = ensure_tap(source.tap, source.executable, taps_root, tuple(source.overrides))
        writer = RawBatchWriter(
            lake, registry or SchemaRegistry.configured(), source.tenant, source.provider, source="singer",
            max_records=max_records, max_age_seconds=max_age_seconds,
        )  # fmt: skip
        workdir = Path(tempfile.mkdtemp(prefix="cdp-source-"))  # mode 0700: the config holds secrets
        try:
            (workdir / "config.json").write_text(json.dumps(config))
            # The timeout bounds the run (retries and their waits included), not the tap's first install.
            deadline = time.monotonic() + source.timeout_minutes * 60
            for attempt in range(source.retries + 1):
                report.attempts = attempt + 1
                try:
                    _attempt(source, command, workdir, session, writer, report, deadline)
                    return report
                except TapFailed as failure:
                    auth = failure.auth_failure
                    if auth:
                        salt = session.new_salt()
                        session.set_pause(auth, source.fingerprint(config, salt), salt)
                        raise SourcePaused(f"source {source.key} paused: {auth}", report) from None
                    if attempt == source.retries:
                        raise
                    time.sleep(source.retry_backoff_seconds * 2**attempt)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            report.duration_seconds = time.monotonic() - started
            report.landed, report.files = Counter(writer.landed), len(writer.files)
            report.dead_letters = Counter(writer.dead_letters.counts)
    return report


def _attempt(
    source: Source,
    command: Path,
    workdir: Path,
    session: SourceSession,
    writer: RawBatchWriter,
    report: RunReport,
    deadline: float,
) -> None:
    config = ["--config", str(workdir / "config.json")]
    try:
        catalog = selected_catalog(_discovered(source, command, workdir, deadline, report), source)
    except ValueError as error:
        raise TapFailed(f"source {source.key}: {error}", report) from None
    (workdir / "catalog.json").write_text(json.dumps(catalog))
    arguments = [*config, source.catalog_option, str(workdir / "catalog.json")]
    bookmark = session.bookmark()
    if bookmark is not None:
        (workdir / "state.json").write_text(json.dumps(bookmark))
        arguments += ["--state", str(workdir / "state.json")]
    tap = _Tap([str(command), *arguments], workdir, deadline, source.auth_failure_patterns)
    target = SingerTarget(writer, _BookmarkSink(session, report))
    try:
        target.run(tap.process.stdout, prepare=_Renamed(registry_names(catalog, source), report))
    except BaseException:
        tap.kill()  # the run was interrupted (or the target failed): the tap does not outlive it
        raise
    if target.refused:  # the target stopped reading: the tap would block on a full pipe
        tap.kill()
        tap.wait()
        raise TapFailed(f"source {source.key}: {target.refused}", report)
    _raise_unless_ok(source, tap, tap.wait(), "sync", report)


def _discovered(source: Source, command: Path, workdir: Path, deadline: float, report: RunReport) -> dict:
    """The tap's catalog (`--discover`), with the config in `workdir`."""
    discovery = _Tap(
        [str(command), "--config", str(workdir / "config.json"), "--discover"],
        workdir, deadline, source.auth_failure_patterns,
    )  # fmt: skip
    catalog_text = discovery.process.stdout.read()
    _raise_unless_ok(source, discovery, discovery.wait(), "discovery", report)
    try:
        return json.loads(catalog_text)
    except ValueError:
        raise TapFailed(f"source {source.key}: the tap's discovery printed no JSON catalog", report) from None


def discover_catalog(source: Source, taps_root: Path | None = None) -> dict:
    """The catalog `source`'s tap discovers with its config (installing the tap on first use),
    within the source's timeout; for `cdp schemas import --source`."""
    config = expand_config(source.config, f"{source.key}.config")
    command = ensure_tap(source.tap, source.executable, taps_root, tuple(source.overrides))
    workdir = Path(tempfile.mkdtemp(prefix="cdp-source-"))  # mode 0700: the config holds secrets
    try:
        (workdir / "config.json").write_text(json.dumps(config))
        return _discovered(source, command, workdir, time.monotonic() + source.timeout_minutes * 60, RunReport())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _raise_unless_ok(source: Source, tap: _Tap, code: int, phase: str, report: RunReport) -> None:
    report.exit_code, report.stderr_tail = code, list(tap.stderr.tail)
    if tap.timed_out:
        raise TapTimeout(
            f"source {source.key}: the tap ran past its timeout of {source.timeout_minutes:g} minutes "
            f"({phase}) and was stopped; the next run resumes from the last bookmark",
            report,
        )
    if code != 0:
        raise TapFailed(f"source {source.key}: the tap's {phase} exited with {code}", report, tap.stderr.auth_failure)

"""Raw-zone manifests: per provider stream and event day, the raw files that hold the day's
records (`manifests/raw/{provider}/{stream}/{day}.json`: each file's key, tenant, bytes and record
count, and an error for a damaged file). The raw assets write them; the curated assets read exactly
the files they list, so a curated run reads the files the raw run saw."""

import json
from collections import Counter
from datetime import date, timedelta

import orjson

from cdp_common.dead_letters import DLQ_KEY
from cdp_ingest.registry import DriftReport, RegisteredSchema
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import RAW_KEY, gunzip_what_you_can


def manifest_key(provider: str, stream: str, day: str) -> str:
    return f"manifests/raw/{provider}/{stream}/{day}.json"


def _day(match) -> str:
    return f"{match['year']}-{match['month']}-{match['day']}"


def build_manifests(lake: LakeResource, registered: RegisteredSchema, days: list[str]) -> tuple[dict, DriftReport]:
    """For each day, the stream's files that hold its records (all tenants), with record counts;
    and the drift seen in them."""
    provider, stream = registered.provider, registered.stream
    manifests = {day: {"provider": provider, "stream": stream, "day": day, "files": []} for day in days}
    drift = DriftReport()
    for obj in lake.list("raw/"):
        match = RAW_KEY.match(obj.key)
        if not match or (match["provider"], match["stream"]) != (provider, stream) or _day(match) not in manifests:
            continue
        body, error = gunzip_what_you_can(lake.read_bytes(obj.key))
        complete = body if not error else body[: body.rfind(b"\n") + 1]  # never count half a record
        lines = complete.splitlines()
        for line in lines:
            drift.add(orjson.loads(line), registered.schema)
        entry = {"key": obj.key, "tenant": match["tenant"], "bytes": obj.size, "records": len(lines)}
        if error:
            entry["error"] = error  # downstream leaves damaged files out and reports them
        manifests[_day(match)]["files"].append(entry)
    return manifests, drift


def write_manifest(lake: LakeResource, manifest: dict) -> None:
    """Publish `manifest` (one of `build_manifests`') under its stream and day."""
    key = manifest_key(manifest["provider"], manifest["stream"], manifest["day"])
    lake.write_bytes(key, json.dumps(manifest, indent=1).encode())


def read_manifest(lake: LakeResource, provider: str, stream: str, day: str) -> dict | None:
    key = manifest_key(provider, stream, day)
    if not lake.list(key):
        return None
    return json.loads(lake.read_bytes(key))


def raw_files_for(
    lake: LakeResource, provider: str, stream: str, first: date, last: date
) -> tuple[list[str], list[str], int]:
    """Spark paths of the readable raw files of days first..last as their manifests list them, the
    keys of damaged ones (left out; the raw asset reports them) and the readable files' bytes."""
    paths, damaged, size = [], [], 0
    for offset in range((last - first).days + 1):
        manifest = read_manifest(lake, provider, stream, (first + timedelta(days=offset)).isoformat())
        for entry in manifest["files"] if manifest else []:
            if "error" in entry:
                damaged.append(entry["key"])
            else:
                paths.append(lake.spark_path(entry["key"]))
                size += entry["bytes"]
    return paths, damaged, size


def dead_letter_counts(lake: LakeResource, provider: str, stream: str, days: list[str]) -> Counter:
    """Dead letters of `provider/stream` filed under `days`, per rule."""
    counts, wanted = Counter(), set(days)
    for obj in lake.list("dlq/"):
        match = DLQ_KEY.match(obj.key)
        if match and (match["provider"], match["stream"]) == (provider, stream) and match["day"] in wanted:
            counts[match["error_type"]] += gunzip_what_you_can(lake.read_bytes(obj.key))[0].count(b"\n")
    return counts

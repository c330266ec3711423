"""Destinations declared per tenant and segment in a YAML file: `CDP_DESTINATIONS_FILE`, default
the packaged `cdp_activation/destinations.yaml`. The README's "Activation" section describes the
format."""

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cdp_resources.consent import PURPOSES

DEFAULT_FILE = Path(__file__).with_name("destinations.yaml")
TYPES = ("file", "http")
MODES = ("upsert", "mirror", "full_refresh")


@dataclass(frozen=True)
class Destination:
    name: str
    type: str  # "file": Parquet under `uri` (local dir or s3://; default the lake's exports/<name>/); "http": JSON batches to `url`
    mode: str = (
        "upsert"  # upsert: adds and changes; mirror: also removes who left; full_refresh: every member every time
    )
    purpose: str | None = None  # required: the consent purpose it serves (members without it are not sent)
    audiences: tuple[tuple[str, str], ...] = (("*", "*"),)  # (tenant, segment) glob patterns
    raw_pii: bool = False  # receives email, phone and name as they are, besides their hashes
    uri: str | None = None
    url: str | None = None
    secret_env: str | None = None  # the variable holding the HMAC secret (http)
    batch_size: int = 500
    max_tries: int = 5
    backoff_seconds: float = 0.5  # the first retry's base wait, doubled each try, with jitter
    timeout_seconds: float = 30.0
    headers: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.type not in TYPES:
            raise ValueError(f"destination {self.name}: type must be one of {TYPES}, not {self.type!r}")
        if self.mode not in MODES:
            raise ValueError(f"destination {self.name}: mode must be one of {MODES}, not {self.mode!r}")
        if self.purpose not in PURPOSES:
            raise ValueError(
                f"destination {self.name}: purpose must be one of {PURPOSES} (the consent it needs), not {self.purpose!r}"
            )
        if self.type == "http" and not self.url:
            raise ValueError(f"destination {self.name}: an http destination needs a url")
        if not self.name.isidentifier():
            raise ValueError(f"destination name {self.name!r} must be letters, digits and underscores")

    def wants(self, tenant: str, segment: str) -> bool:
        return any(fnmatch.fnmatchcase(tenant, t) and fnmatch.fnmatchcase(segment, s) for t, s in self.audiences)

    def secret(self) -> bytes | None:
        value = os.environ.get(self.secret_env) if self.secret_env else None
        return value.encode() if value else None


def load_destinations(path: str | Path | None = None) -> list[Destination]:
    """The destinations in `path` (default: CDP_DESTINATIONS_FILE, else the packaged file); `${VAR}`
    in uri and url is expanded from the environment."""
    source = Path(path or os.environ.get("CDP_DESTINATIONS_FILE") or DEFAULT_FILE)
    document = yaml.safe_load(source.read_text()) or {}
    destinations = []
    for entry in document.get("destinations") or []:
        entry = dict(entry)
        entry["audiences"] = tuple(
            (a.get("tenant", "*"), a.get("segment", "*")) for a in entry.get("audiences") or [{}]
        )
        for key in ("uri", "url"):
            if entry.get(key):
                entry[key] = os.path.expandvars(entry[key])
        destinations.append(Destination(**entry))
    names = [d.name for d in destinations]
    if len(names) != len(set(names)):
        raise ValueError(f"{source}: destination names must be unique, got {names}")
    return destinations


def raw_pii_wanted(destinations: list[Destination], tenant: str, segment: str) -> bool:
    """Whether any destination of this audience receives raw PII (only then does the export hold it)."""
    return any(d.raw_pii and d.wants(tenant, segment) for d in destinations)

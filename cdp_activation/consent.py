"""Which audience members a destination may receive: those whose consent for the purpose it serves
is `granted` in the export (customer_360's `{purpose}_consent` at the export's day), and those whose
consent is `unknown` only when their tenant's default for the purpose says grant. The default is
deny unless the consent file (`CDP_CONSENT_FILE`, else the packaged `cdp_activation/consent.yaml`)
configures otherwise, per tenant and optionally per purpose."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from cdp_resources.consent import PURPOSES
from cdp_resources.names import checked_name

DEFAULT_FILE = Path(__file__).with_name("consent.yaml")
CHOICES = {"grant": True, "deny": False}


def consent_column(purpose: str) -> str:
    return f"{purpose}_consent"


@dataclass(frozen=True)
class UnknownConsent:
    """Per tenant (and purpose), whether a member without any statement counts as granted."""

    default: bool = False
    tenants: dict[str, dict[str, bool]] = field(default_factory=dict)  # tenant -> purpose -> grant

    def grants(self, tenant: str, purpose: str) -> bool:
        return self.tenants.get(tenant, {}).get(purpose, self.default)


def _choice(source: Path, where: str, value: object) -> bool:
    if value not in CHOICES:
        raise ValueError(f"{source}: {where} must be grant or deny, not {value!r}")
    return CHOICES[value]


def load_unknown_consent(path: str | Path | None = None) -> UnknownConsent:
    """The consent file's defaults for unknown consent: `default` for every tenant, `tenants` each
    with one choice for every purpose or a choice per purpose."""
    source = Path(path or os.environ.get("CDP_CONSENT_FILE") or DEFAULT_FILE)
    document = (yaml.safe_load(source.read_text()) or {}).get("unknown") or {}
    default = _choice(source, "unknown.default", document.get("default", "deny"))
    tenants = {}
    for tenant, choice in (document.get("tenants") or {}).items():
        checked_name("tenant", tenant)
        if isinstance(choice, dict):
            unknown = set(choice) - set(PURPOSES)
            if unknown:
                raise ValueError(f"{source}: tenant {tenant}: unknown purposes {sorted(unknown)}, known: {PURPOSES}")
            tenants[tenant] = {p: _choice(source, f"{tenant}.{p}", c) for p, c in choice.items()}
        else:
            tenants[tenant] = dict.fromkeys(PURPOSES, _choice(source, f"tenant {tenant}", choice))
    return UnknownConsent(default, tenants)


def permitted(members: pa.Table, purpose: str, unknown_granted: bool) -> pa.ChunkedArray:
    """Per member row: whether a destination serving `purpose` may receive it."""
    statuses = members[consent_column(purpose)]
    allowed = ["granted", "unknown"] if unknown_granted else ["granted"]
    return pc.is_in(statuses, value_set=pa.array(allowed))

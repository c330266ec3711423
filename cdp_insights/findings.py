"""The findings of a run of the detector in `insights.findings`, the day's largest segment
movements, and the daily digest (markdown) the findings asset shows in its metadata."""

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

import psycopg

from cdp_insights.anomalies import Finding
from cdp_insights.metrics import SCHEMA
from cdp_resources.warehouse_security import ensure_security, protect

FINDINGS_TABLE = "findings"
CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.{FINDINGS_TABLE} (
    tenant_id text NOT NULL,
    day date NOT NULL,
    metric text NOT NULL,
    actual double precision NOT NULL,
    expected double precision NOT NULL,
    expected_low double precision NOT NULL,
    expected_high double precision NOT NULL,
    score double precision NOT NULL,
    direction text NOT NULL,
    severity text NOT NULL,
    explanation text NOT NULL,
    contributors jsonb NOT NULL,
    PRIMARY KEY (tenant_id, day, metric)
);
"""


@dataclass(frozen=True)
class Movement:
    tenant_id: str
    day: date
    segment: str
    before: int
    after: int

    @property
    def change(self) -> int:
        return self.after - self.before


def store(conn: psycopg.Connection, findings: Iterable[Finding], first: date, last: date) -> None:
    """Replace the findings of days first..last in one transaction."""
    ensure_security(conn)
    conn.execute(CREATE)
    protect(conn, SCHEMA, FINDINGS_TABLE)
    with conn.transaction():
        conn.execute(f"DELETE FROM {SCHEMA}.{FINDINGS_TABLE} WHERE day BETWEEN %s AND %s", (first, last))
        for f in findings:
            conn.execute(
                f"INSERT INTO {SCHEMA}.{FINDINGS_TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    f.tenant_id,
                    f.day,
                    f.metric,
                    f.actual,
                    f.expected,
                    f.low,
                    f.high,
                    f.score,
                    f.direction,
                    f.severity,
                    f.explanation,
                    json.dumps([c.__dict__ for c in f.contributors]),
                ),
            )


def segment_movements(rows: Iterable[Mapping], days: Iterable[date], top: int = 5) -> list[Movement]:
    """Per tenant and day of `days`, the `top` segments whose size moved most since the day before
    (the latest earlier day in `rows`; a new segment moved from 0)."""
    series: dict[tuple[str, str], dict[date, int]] = defaultdict(dict)
    for r in rows:
        if r["metric"] == "segment_size":
            series[(r["tenant_id"], r["member"])][r["day"]] = int(r["value"])
    moves: dict[tuple[str, date], list[Movement]] = defaultdict(list)
    for (tenant, segment), sizes in series.items():
        for day in days:
            if day in sizes:
                earlier = [d for d in sizes if d < day]
                before = sizes[max(earlier)] if earlier else 0
                moves[(tenant, day)].append(Movement(tenant, day, segment, before, sizes[day]))
    return [
        move for key in sorted(moves) for move in sorted(moves[key], key=lambda m: (-abs(m.change), m.segment))[:top]
    ]


def digest(findings: list[Finding], movements: list[Movement], first: date, last: date) -> str:
    """The markdown digest of days first..last: findings by severity, then segment movements."""
    span = first.isoformat() if first == last else f"{first}–{last}"
    lines = [f"## Insights for {span}", ""]
    if not findings:
        lines.append("No anomalies found.")
    order = {"high": 0, "medium": 1}
    for f in sorted(findings, key=lambda f: (order[f.severity], f.tenant_id, f.day, f.metric)):
        lines.append(f"- **{f.severity}** {f.tenant_id} {f.day}: {f.explanation}")
    if movements:
        lines += [
            "",
            "### Largest segment movements",
            "",
            "| tenant | day | segment | before | after | change |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {m.tenant_id} | {m.day} | {m.segment} | {m.before} | {m.after} | {m.change:+d} |" for m in movements
        ]
    return "\n".join(lines) + "\n"

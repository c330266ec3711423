"""The sample-data generator: tenants × days of raw files, and the ground truth beside them.

Each (tenant, day) is made independently from the seed, in worker processes, so the output is
the same bytes whatever the number of workers. Truth goes to `truth/{tenant}/`:
`persons.ndjson.gz` (each person's canonical email, phone and id in every system),
`companies.ndjson.gz`, `dirt/{day}.ndjson.gz` (every dirty record: stream, id, kind),
`consent.ndjson.gz` (each person's consent per purpose as of the last day: the latest statement of
a record the platform accepts, denied winning a tie; unknown without one) and
`truth/manifest.json` (parameters, rates and counts). Each tenant's company reference, the input
company enrichment reads, goes where a tenant would put it: `reference/{tenant}/company_domains.csv`
(the tenant's companies that are on the generator's company list; the others stay unknown).
With `purchases` set, shoppers order by a BG/NBD process instead of at random (`purchases.py`),
and `truth/{tenant}/purchases.ndjson.gz` holds each shopper's latent purchase rate, dropout
probability and spend scale.
"""

import csv
import io
import json
import multiprocessing
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

from tqdm import tqdm

from cdp_resources.consent import PURPOSES
from cdp_resources.lake import LakeResource
from cdp_resources.raw_zone import batches, encode_ndjson_gz, raw_key
from cdp_sampledata.anomalies import CountryDrop
from cdp_sampledata.dirt import DirtRates
from cdp_sampledata.population import Population, build_population, reference_companies
from cdp_sampledata.purchases import PurchaseBehaviour, Timeline, timelines
from cdp_sampledata.streams import DRIFT_FIELD, DRIFTING_STREAM, generate_day
from cdp_transform.company_reference import COMPANY_REFERENCE_HEADER, company_reference_key


@dataclass(frozen=True)
class GeneratorConfig:
    tenants: tuple[str, ...] = ("acme_corp", "globex")
    days: int = 7
    customers: int = 2_000
    seed: int = 42
    start: date = date(2026, 1, 1)
    late_days: int = 3
    rates: DirtRates = field(default_factory=DirtRates)
    # Injected anomalies with their ground truth in the manifest; none by default.
    anomalies: tuple[CountryDrop, ...] = ()
    # None: 2 % of shoppers order each day at random (what the other tests' counts rest on).
    purchases: PurchaseBehaviour | None = None


@dataclass
class GenerationSummary:
    records: Counter = field(default_factory=Counter)
    dirt: Counter = field(default_factory=Counter)
    files: int = 0
    seconds: float = 0.0

    @property
    def total_records(self) -> int:
        return sum(self.records.values())


_populations: dict[tuple, Population] = {}
_lake: LakeResource | None = None


def _init_worker(lake_config: dict) -> None:
    global _lake
    _lake = LakeResource(**lake_config)


def _population(config: GeneratorConfig, tenant: str) -> Population:
    key = (config.seed, tenant, config.customers, config.days)
    if key not in _populations:
        _populations[key] = build_population(config.seed, tenant, config.customers, config.days)
    return _populations[key]


_timelines: dict[tuple, dict[str, Timeline]] = {}


def _purchase_timelines(config: GeneratorConfig, tenant: str) -> dict[str, Timeline] | None:
    if config.purchases is None:
        return None
    key = (config.seed, tenant, config.customers, config.days, config.purchases)
    if key not in _timelines:
        _timelines[key] = timelines(_population(config, tenant), config.days, config.purchases, config.seed)
    return _timelines[key]


def _flush_time(day: date, days_late: int) -> datetime:
    """When a batch of `day`'s records reached the lake: 23:00 UTC on the day they arrived."""
    return datetime.combine(day + timedelta(days=days_late), clock(23), UTC)


def _statement_order(statement: dict) -> tuple[str, bool]:
    """Later wins; at the same moment a denial wins (the platform's rule, dbt's consent_history)."""
    return statement["stated_at"], statement["status"] == "denied"


def _latest(statements, into: dict[tuple[str, str], dict]) -> dict[tuple[str, str], dict]:
    for statement in statements:
        key = (statement["person_id"], statement["purpose"])
        if key not in into or _statement_order(statement) > _statement_order(into[key]):
            into[key] = statement
    return into


def _make_day(config: GeneratorConfig, tenant: str, day_index: int) -> tuple[Counter, Counter, int, dict]:
    output = generate_day(
        _population(config, tenant),
        day_index,
        config.start,
        config.days,
        config.rates,
        config.late_days,
        config.seed,
        config.anomalies,
        _purchase_timelines(config, tenant),
    )
    day = config.start + timedelta(days=day_index)
    records, files = Counter(), 0
    for ((provider, stream), days_late), rows in sorted(output.records.items()):
        records[f"{provider}/{stream}"] += len(rows)
        flushed = _flush_time(day, days_late)
        for seq, batch in enumerate(batches(rows)):
            _lake.write_bytes(raw_key(tenant, provider, stream, day, flushed, seq), encode_ndjson_gz(batch))
            files += 1
    _lake.write_bytes(f"truth/{tenant}/dirt/{day.isoformat()}.ndjson.gz", encode_ndjson_gz(output.dirt))
    return records, Counter(row["dirt"] for row in output.dirt), files, _latest(output.consent, {})


def _make_day_star(args):
    return _make_day(*args)


def _person_truth(population: Population) -> list[dict]:
    rows = []
    for person in population.people:
        row = asdict(person)
        row.pop("company")
        row["phone_e164"] = person.phone_e164
        row["company_domain"] = person.company.domain if person.company else None
        row["salesforce_account_id"] = person.company.account_id if person.company else None
        rows.append(row)
    return rows


def _consent_truth(population: Population, latest: dict[tuple[str, str], dict]) -> list[dict]:
    unknown = {"status": "unknown", "source": None, "stated_at": None}
    return [
        {"person_id": person.person_id, "purpose": purpose, **unknown, **latest.get((person.person_id, purpose), {})}
        for person in population.people
        for purpose in PURPOSES
    ]


def _company_reference(population: Population) -> bytes:
    listed = {row["domain"] for row in reference_companies()}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COMPANY_REFERENCE_HEADER)
    for company in sorted(population.companies, key=lambda c: c.domain):
        if company.domain in listed:
            writer.writerow((company.domain, company.name, company.industry, company.employees))
    return out.getvalue().encode()


def generate(lake: LakeResource, config: GeneratorConfig, workers: int = 2, progress: bool = True) -> GenerationSummary:
    """Write `config`'s raw zone and truth into `lake`; returns what was written."""
    started = time.perf_counter()
    summary = GenerationSummary()
    consent = {tenant: {} for tenant in config.tenants}
    units = [(config, tenant, day) for tenant in config.tenants for day in range(config.days)]
    lake_config = {"base_uri": lake.base_uri, "s3_endpoint_url": lake.s3_endpoint_url, "s3_region": lake.s3_region}
    bar = tqdm(total=len(units), unit="day", desc="generating", disable=not progress)
    if workers <= 1:
        _init_worker(lake_config)
        results = map(_make_day_star, units)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (lake_config,))
        results = pool.imap(_make_day_star, units)
    try:
        for (_, tenant, _), (records, dirt, files, statements) in zip(units, results, strict=True):
            _latest(statements.values(), consent[tenant])
            summary.records.update(records)
            summary.dirt.update(dirt)
            summary.files += files
            bar.update()
            bar.set_postfix(records=f"{summary.total_records:,}")
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()

    for tenant in config.tenants:
        population = _population(config, tenant)
        lake.write_bytes(f"truth/{tenant}/persons.ndjson.gz", encode_ndjson_gz(_person_truth(population)))
        lake.write_bytes(
            f"truth/{tenant}/companies.ndjson.gz",
            encode_ndjson_gz([asdict(company) for company in population.companies]),
        )
        lake.write_bytes(company_reference_key(tenant), _company_reference(population))
        lake.write_bytes(
            f"truth/{tenant}/consent.ndjson.gz", encode_ndjson_gz(_consent_truth(population, consent[tenant]))
        )
        if (purchases := _purchase_timelines(config, tenant)) is not None:
            lake.write_bytes(
                f"truth/{tenant}/purchases.ndjson.gz",
                encode_ndjson_gz([purchases[person_id].truth() for person_id in sorted(purchases)]),
            )
    summary.seconds = time.perf_counter() - started
    manifest = {
        "config": {**asdict(config), "start": config.start.isoformat(), "tenants": list(config.tenants)},
        "records": dict(sorted(summary.records.items())),
        "dirt": dict(sorted(summary.dirt.items())),
        "files": summary.files,
        "anomalies": [anomaly.truth(config.start) for anomaly in config.anomalies],
        "schema_drift": {
            "stream": "/".join(DRIFTING_STREAM),
            "field": DRIFT_FIELD,
            "from_day": (config.start + timedelta(days=config.days // 2)).isoformat(),
        },
    }
    lake.write_bytes("truth/manifest.json", json.dumps(manifest, indent=2).encode())
    return summary

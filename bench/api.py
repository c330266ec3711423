"""Benchmark: the profile API's lookups by email and searches, against a bare endpoint of the same
framework (FastAPI on uvicorn, one process each) that returns constant JSON, in the same run.

`--profiles` people (default 1M) over two tenants are generated in PostgreSQL with
`generate_series` in the shape the serving build reads (marts.customer_360, the identity map, the
attributed events and orders, segment membership), the serving tables are built by the real build
(`cdp_api.serving`) and a key is made by the real key code. `wrk` (Debian's package: `apt-get
install wrk`) drives each endpoint from `--connections` keep-alive connections on loopback for
`--seconds`; it is a C load generator whose one thread uses a fraction of a core, where an async
Python client would need a core of its own to keep up and would measure itself. Goals on 2
cores: lookups ≥ 1,000 requests/s with p99 < 50 ms, search p99 < 100 ms, lookups/bare ≥ 0.5.

    .venv/bin/python bench/api.py
    .venv/bin/python bench/api.py --profiles 100000 --seconds 5   # quick
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from cdp_api import keys
from cdp_api.serving import finish_build, start_build
from cdp_resources.local_ports import free_port
from cdp_resources.postgres_server import EmbeddedPostgres
from cdp_resources.warehouse_security import PIPELINE_ROLE, ensure_roles

DATABASE = "bench_api"
TENANT, OTHER = "bench_a", "bench_b"
PASSWORD = "bench-only-password"

UPSTREAM_SQL = """
CREATE SCHEMA marts; CREATE SCHEMA raw_cdp; CREATE SCHEMA intermediate; CREATE SCHEMA segments;
CREATE TABLE marts.customer_360 AS
SELECT CASE WHEN n %% 10 = 0 THEN %(other)s ELSE %(tenant)s END AS tenant_id,
       format('c%%s', n) AS cdp_customer_id,
       format('person%%s@example.com', n) AS email,
       format('+1555%%s', lpad(n::text, 7, '0')) AS phone,
       initcap(s[1 + n %% 20] || s[1 + (n / 20) %% 20] || s[1 + (n / 400) %% 20]) || ' '
           || initcap(s[1 + (n / 8000) %% 20] || s[1 + (n / 7) %% 20] || 'son') AS name,
       format('city_%%s', n %% 97) AS city, 'US'::text AS country, NULL::text AS company_name,
       NULL::text AS industry, NULL::integer AS company_employees, n %% 3 = 0 AS accepts_marketing,
       'email'::text AS preferred_channel, 3::bigint AS identifiers, now() - interval '90 days' AS first_seen,
       2::bigint AS orders, 120.00::numeric(18, 2) AS lifetime_revenue_usd,
       60.00::numeric(18, 2) AS average_order_value_usd, DATE '2026-01-01' AS first_order_date,
       DATE '2026-02-01' AS last_order_date, 30 AS days_since_last_order, 4::bigint AS events_30d,
       2::bigint AS page_views_30d, now() AS last_event_at, DATE '2026-03-03' AS as_of_date,
       'granted'::text AS email_marketing_consent, 'unknown'::text AS sms_marketing_consent,
       'denied'::text AS advertising_consent, (n %% 100) / 100.0::double precision AS churn_probability,
       0.5::double precision AS probability_alive, 1.5::double precision AS expected_purchases_12m,
       90.00::numeric(18, 2) AS predicted_value_12m_usd, DATE '2026-03-03' AS predicted_as_of
FROM generate_series(1, %(profiles)s) AS n,
     (SELECT ARRAY['an', 'bel', 'cor', 'dan', 'el', 'fin', 'gra', 'hol', 'ix', 'jo', 'ka', 'lin', 'mor', 'nel',
                   'or', 'pa', 'quin', 'ros', 'sa', 'tor'] AS s) AS syllables;
CREATE TABLE raw_cdp.customer_ids AS
SELECT tenant_id, cdp_customer_id, t.id_type,
       CASE t.id_type WHEN 'email' THEN email WHEN 'phone' THEN phone ELSE substr(cdp_customer_id, 2) END AS id_value,
       first_seen AS id_since, first_seen, last_event_at AS last_seen
FROM marts.customer_360, (VALUES ('email'), ('phone'), ('shopify_customer_id')) AS t (id_type);
CREATE TABLE intermediate.int_customer_events AS
SELECT tenant_id, cdp_customer_id, format('%%s-%%s', cdp_customer_id, k) AS message_id, 'track'::text AS event_type,
       'page_view'::text AS event_name, now() - k * interval '1 day' AS event_ts
FROM marts.customer_360, generate_series(1, 2) AS k;
CREATE TABLE intermediate.int_customer_orders AS
SELECT tenant_id, cdp_customer_id, substr(cdp_customer_id, 2)::bigint AS order_id, now() AS ordered_at,
       current_date AS order_date, 60.00::numeric(18, 2) AS total_usd, 'paid'::text AS financial_status
FROM marts.customer_360;
CREATE TABLE segments.segment_membership AS
SELECT tenant_id, 'engaged'::text AS segment, cdp_customer_id, as_of_date, 'segment_bench'::text AS source_model
FROM marts.customer_360 WHERE substr(cdp_customer_id, 2)::bigint %% 3 = 0;
"""

WRK_SCRIPT = """
local paths = {}
local counter = 0
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
end
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
"""


SYLLABLES = [
    "an",
    "bel",
    "cor",
    "dan",
    "el",
    "fin",
    "gra",
    "hol",
    "ix",
    "jo",
    "ka",
    "lin",
    "mor",
    "nel",
    "or",
    "pa",
    "quin",
    "ros",
    "sa",
    "tor",
]


def generated_name(n: int) -> str:
    """Profile n's name as UPSTREAM_SQL makes it."""
    s = SYLLABLES
    return f"{(s[n % 20] + s[n // 20 % 20] + s[n // 400 % 20]).capitalize()} {(s[n // 8000 % 20] + s[n // 7 % 20] + 'son').capitalize()}"


def prepare(server: EmbeddedPostgres, profiles: int) -> str:
    """A fresh bench database with the generated upstream tables and the serving tables; returns the API's URL."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        ensure_roles(admin)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DATABASE), sql.Identifier(PIPELINE_ROLE))
        )
    started = time.perf_counter()
    with psycopg.connect(server.url(DATABASE, PIPELINE_ROLE), autocommit=True) as conn:
        conn.execute(UPSTREAM_SQL % {"profiles": profiles, "tenant": f"'{TENANT}'", "other": f"'{OTHER}'"})
        generated = time.perf_counter()
        start_build(conn)
        built = finish_build(conn)
    print(
        f"generated {profiles:,} profiles in {generated - started:.0f}s; serving tables built and swapped in "
        f"{time.perf_counter() - generated:.0f}s: {built.rows}",
        flush=True,
    )
    return make_conninfo(server.url(DATABASE, keys.LOGIN_ROLE), password=PASSWORD)


def make_key(server: EmbeddedPostgres) -> str:
    with psycopg.connect(server.url(DATABASE), autocommit=True) as admin:
        keys.ensure_login_role(admin, PASSWORD)
        return keys.create_key(admin, TENANT, ("profiles", "pii"), rate_per_second=1_000_000)[1]


BARE_APP = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/bare")
async def bare() -> dict:
    return {"status": "ok", "profiles": 1}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def start(command: list[str], port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server on port {port} did not start: {log.read_text()[-2000:]}")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, paths: list[str], key: str, connections: int, seconds: int, workdir: Path) -> dict[str, float]:
    (workdir / "paths.txt").write_text("\n".join(paths) + "\n")
    (workdir / "paths.lua").write_text(WRK_SCRIPT % {})
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {key}",
         "-s", str(workdir / "paths.lua"), url, "--", str(workdir / "paths.txt")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    out = result.stdout
    percentiles = {
        p: float(v) * _UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    if set(percentiles) != {"50", "99"}:
        raise RuntimeError(f"wrk's output has no latency percentiles:\n{out}\n{result.stderr}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"Socket errors: .*timeout (\d+)", out)  # wrk's 2 s: not in its percentiles
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": percentiles["50"],
        "p99": percentiles["99"],
        "errors": (int(errors.group(1)) if errors else 0) + (int(timeouts.group(1)) if timeouts else 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench/api.py needs wrk: apt-get install wrk", file=sys.stderr)
        return 1
    server = EmbeddedPostgres.default().start()
    api_url = prepare(server, args.profiles)
    key = make_key(server)
    tenant_people = [n for n in range(1, args.profiles + 1, max(1, args.profiles // 20_000)) if n % 10][:10_000]
    lookups = [f"/v1/{TENANT}/profiles/email:person{n}@example.com" for n in tenant_people]
    # A third each: email prefixes, phone prefixes, name prefixes; apart, names with one letter
    # wrong, which only similarity finds.
    searches, misspelt = [], []
    for n in tenant_people[::10]:
        name = generated_name(n)
        searches += [
            f"/v1/{TENANT}/profiles?q=person{n // 100}&limit=20",
            f"/v1/{TENANT}/profiles?q=%2B1555{n:07d}"[:-3] + "&limit=20",
            f"/v1/{TENANT}/profiles?q={quote(name[:-1])}&limit=20",
        ]
        misspelt.append(f"/v1/{TENANT}/profiles?q={quote(name[:3] + 'x' + name[4:])}&limit=20")
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        api_port, bare_port = free_port(), free_port()
        python = sys.executable
        cdp = str(Path(python).parent / "cdp")
        processes = [
            start([cdp, "api", "serve", "--port", str(api_port)], api_port, {"CDP_API_POSTGRES_URL": api_url}, workdir / "api.log"),
            start([python, "-c", BARE_APP, str(bare_port)], bare_port, {}, workdir / "bare.log"),
        ]  # fmt: skip
        try:
            for path in (lookups[0], searches[0]):  # the API answers before it is measured
                answer = httpx.get(f"http://127.0.0.1:{api_port}{path}", headers={"X-API-Key": key}, timeout=30)
                if answer.status_code != 200:
                    raise RuntimeError(f"{answer.status_code} from the API: {answer.text[:300]}")
            results = {}
            for name, port, paths, connections in (
                ("bare", bare_port, ["/bare"], args.connections),
                ("lookup by email", api_port, lookups, args.connections),
                ("search", api_port, searches, args.connections),
                ("misspelt, 1 conn", api_port, misspelt, 1),  # what one such query costs, without a queue
            ):
                wrk(f"http://127.0.0.1:{port}", paths[:200], key, connections, 2, workdir)  # warm-up
                results[name] = wrk(f"http://127.0.0.1:{port}", paths, key, connections, args.seconds, workdir)
                r = results[name]
                print(
                    f"{name:16} {r['rps']:8,.0f} req/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
                    f"errors and timeouts {r['errors']}"
                )
        finally:
            for process in processes:
                process.terminate()
                process.wait()
    lookup, search, bare = results["lookup by email"], results["search"], results["bare"]
    print(
        f"lookups/bare {lookup['rps'] / bare['rps']:.2f} (goal ≥ 0.5); lookups {lookup['rps']:,.0f} req/s (goal ≥ 1,000), "
        f"p99 {lookup['p99']:.1f} ms (goal < 50); search p99 {search['p99']:.1f} ms (goal < 100; "
        f"a misspelt name alone {results['misspelt, 1 conn']['p50']:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

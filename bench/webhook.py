"""Benchmark: signed, durable webhook ingestion against a bare endpoint of the same framework.

Both servers are uvicorn + Starlette processes on 127.0.0.1 with the same settings: the receiver
(`python -m cdp_ingest.webhooks serve`, PostgreSQL queue on the embedded server) checks size,
rate, signature and schema and answers only after its group commit; the bare app reads the body
and answers 200. One load process sends the same pre-signed requests (Shopify orders, Stripe
charges and app events in turn, each a new event) to each over keep-alive connections: a plain
asyncio HTTP/1.1 client, since a full client library would cost more CPU than the bare server and
hide the difference. Bounded by --requests and --seconds per endpoint. Prints requests/s, p50 and
p99 latency for both and the ratio, checks that every acknowledged event is in the queue, then
times the batcher flushing them into a scratch lake.

    .venv/bin/python bench/webhook.py                    # 20,000 requests each, 64 connections
    .venv/bin/python bench/webhook.py --requests 5000    # quick
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter

import psycopg
from proc_cpu import cpu_seconds  # bench/'s own module

from cdp_common.signatures import shopify_signature, sign_timestamped
from cdp_resources.postgres_server import EmbeddedPostgres, free_port
from cdp_resources.settings import state_dir

HOST = "127.0.0.1"
SECRETS = {"bench": {"shopify": "shpss_bench", "stripe": "whsec_bench", "app": "app_bench"}}


def serve_bare(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def ok(request):
        await request.body()
        return Response(b'{"status":"ok"}', 200, media_type="application/json")

    app = Starlette(routes=[Route("/webhooks/{tenant}/{provider}", ok, methods=["POST"])])
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def signed_requests(first: int, count: int) -> list[bytes]:
    """Events `first`…`first + count - 1` as signed raw HTTP/1.1 requests, the three providers in turn."""
    now = int(time.time())
    triggered = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    out = []
    for n in range(first, first + count):
        kind = ("shopify", "stripe", "app")[n % 3]
        secret = SECRETS["bench"][kind].encode()
        if kind == "shopify":
            body = json.dumps(
                {
                    "id": n,
                    "created_at": "2026-01-05T10:00:00Z",
                    "currency": "USD",
                    "total_price": "19.90",
                    "email": f"b{n}@example.com",
                    "line_items": [{"id": n * 10, "quantity": 1, "price": "19.90"}],
                }
            ).encode()
            headers = {
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Event-Id": f"e{n}",
                "X-Shopify-Triggered-At": triggered,
                "X-Shopify-Hmac-Sha256": shopify_signature(secret, body),
            }
        elif kind == "stripe":
            body = json.dumps(
                {
                    "id": f"evt_{n}",
                    "type": "charge.succeeded",
                    "created": now,
                    "data": {
                        "object": {
                            "id": f"ch_{n}",
                            "object": "charge",
                            "amount": 1990,
                            "currency": "usd",
                            "created": now,
                        }
                    },
                }
            ).encode()
            headers = {"Stripe-Signature": sign_timestamped(secret, body, now)}
        else:
            body = json.dumps(
                {
                    "message_id": f"m{n}",
                    "type": "track",
                    "event": "Viewed",
                    "user_id": f"u{n % 97}",
                    "timestamp": "2026-01-05T09:30:00Z",
                    "properties": {"page": "/pricing"},
                }
            ).encode()
            headers = {"X-CDP-Signature": sign_timestamped(secret, body, now)}
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out.append(
            f"POST /webhooks/bench/{kind} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n".encode()
            + body
        )
    return out


async def _connection(port: int, work, deadline: float, latencies: list, statuses: Counter) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    for request in work:
        if time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        statuses[int(head[9:12])] += 1
    writer.close()


async def _load(port: int, requests: list[bytes], connections: int, seconds: float) -> dict:
    work, latencies, statuses = iter(requests), [], Counter()
    started = time.perf_counter()
    await asyncio.gather(*(_connection(port, work, started + seconds, latencies, statuses) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": cuts[49] * 1000,
        "p99": cuts[98] * 1000,
        "statuses": dict(statuses),
    }


def load(port: int, requests: list[bytes], connections: int, seconds: float) -> dict:
    try:
        import uvloop

        return uvloop.run(_load(port, requests, connections, seconds))
    except ImportError:
        return asyncio.run(_load(port, requests, connections, seconds))


def median_round(results: list[dict]) -> dict:
    """The round with the median throughput, with the requests and statuses of all rounds."""
    middle = sorted(results, key=lambda result: result["rps"])[len(results) // 2]
    return middle | {
        "requests": sum(r["requests"] for r in results),
        "statuses": dict(sum((Counter(r["statuses"]) for r in results), Counter())),
    }


def _wait_until_up(port: int, proc: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"server on {port} did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per endpoint (at most)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per endpoint (at most)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per endpoint; the median is shown")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(args.serve_bare)

    root = state_dir() / "bench" / "webhook"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "secrets.json").write_text(json.dumps(SECRETS))
    server = EmbeddedPostgres.default().start()
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS bench_webhook")
        conn.execute("CREATE DATABASE bench_webhook")
    url = server.url("bench_webhook")
    env = {
        **os.environ,
        "CDP_POSTGRES_URL": url,
        "CDP_WEBHOOK_SECRETS_FILE": str(root / "secrets.json"),
        "CDP_WEBHOOK_RATE": "1000000",
        "CDP_WEBHOOK_BURST": "1000000",
    }
    bare_port, signed_port = free_port(), free_port()
    servers = [
        subprocess.Popen([sys.executable, __file__, "--serve-bare", str(bare_port)], env=env),
        subprocess.Popen(
            [sys.executable, "-m", "cdp_ingest.webhooks", "serve", "--host", HOST, "--port", str(signed_port)], env=env
        ),
    ]
    try:
        for port, proc in zip((bare_port, signed_port), servers, strict=True):
            _wait_until_up(port, proc)
        warmup, measured = signed_requests(0, 1_000), signed_requests(1_000, args.requests)
        load(bare_port, warmup, 8, 10)
        load(signed_port, warmup, 8, 10)  # (these events are queued too)
        rounds: dict[str, list[dict]] = {"bare": [], "signed": []}
        for round_ in range(args.rounds):  # alternate, so a busy moment on the machine hits both alike
            for name, port, proc in zip(rounds, (bare_port, signed_port), servers, strict=True):
                chunk = measured[round_ :: args.rounds]
                cpu = cpu_seconds(proc.pid)
                result = load(port, chunk, args.connections, args.seconds / args.rounds)
                rounds[name].append(result | {"cpu_us": (cpu_seconds(proc.pid) - cpu) / result["requests"] * 1e6})
        bare, signed = (median_round(rounds[name]) for name in rounds)
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)

    with psycopg.connect(url) as conn:
        queued = conn.execute("SELECT count(*) FROM cdp_webhooks.queue").fetchone()[0]
    acknowledged = signed["statuses"].get(200, 0) + len(warmup)
    print(
        f"requests: up to {args.requests:,} per endpoint in {args.rounds} alternating rounds (median round shown), "
        f"{args.connections} keep-alive connections, loopback, Shopify/Stripe/app events in turn"
    )
    for name, result in (("bare", bare), ("signed", signed)):
        print(
            f"{name:7s} {result['requests']:7,} requests  {result['rps']:8,.0f} req/s  p50 {result['p50']:6.2f} ms  "
            f"p99 {result['p99']:6.2f} ms  server CPU {result['cpu_us']:4.0f} µs/request  statuses {result['statuses']}"
        )
    print(f"ratio signed/bare throughput: {signed['rps'] / bare['rps']:.2f}")
    print(f"durable: {queued:,} events in the PostgreSQL queue for {acknowledged:,} acknowledged")
    if set(signed["statuses"]) != {200} or queued != acknowledged:
        raise SystemExit(
            "not every request was accepted and queued: the figures above do not measure durable ingestion"
        )

    from cdp_ingest.webhooks.batcher import Batcher
    from cdp_resources.lake import LakeResource

    started = time.perf_counter()
    Batcher(url, LakeResource(base_uri=str(root / "lake")), max_age_seconds=0).step()
    seconds = time.perf_counter() - started
    print(f"batcher: {queued:,} events flushed to the raw zone in {seconds:.2f} s ({queued / seconds:,.0f} events/s)")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`cdp webhooks serve` (the receiver on uvicorn) and `cdp webhooks batch` (the batcher loop).

Both read their settings from the environment (`config.WebhookSettings`); `python -m
cdp_ingest.webhooks …` runs the same commands without loading the rest of the `cdp` command.
"""

import argparse
import logging
import os
import signal
import sys
import threading


def _serve(args) -> int:
    import uvicorn

    from cdp_ingest.webhooks.app import create_app
    from cdp_ingest.webhooks.config import Secrets, WebhookSettings
    from cdp_ingest.webhooks.pg_queue import GroupCommitQueue
    from cdp_ingest.webhooks.sqs_queue import SqsQueue

    settings = WebhookSettings.from_env()
    if settings.sqs_queue_url:
        queue = SqsQueue(settings.sqs_queue_url, settings.sqs_endpoint_url)
    else:
        queue = GroupCommitQueue(settings.database_url(), settings.writer_connections)
    app = create_app(settings, Secrets.load(), queue)
    print(
        f"cdp webhooks serve: http://{args.host}:{args.port}/webhooks/{{tenant}}/{{provider}} "
        f"(queue: {'SQS' if settings.sqs_queue_url else 'PostgreSQL'})",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _batch(args) -> int:
    from cdp_ingest.webhooks.batcher import Batcher
    from cdp_ingest.webhooks.config import WebhookSettings
    from cdp_ingest.webhooks.sqs_queue import sqs_client
    from cdp_resources.lake import LakeResource
    from cdp_resources.settings import default_lake_uri

    settings = WebhookSettings.from_env()
    lake = LakeResource(
        base_uri=args.lake or os.environ.get("CDP_LAKE_URI") or default_lake_uri(),
        s3_endpoint_url=os.environ.get("CDP_S3_ENDPOINT_URL"),
    )
    sqs = sqs_client(settings.sqs_endpoint_url) if settings.sqs_queue_url else None
    batcher = Batcher(
        settings.database_url(),
        lake,
        max_records=settings.max_records,
        max_age_seconds=settings.max_age_seconds,
        dedup_hours=settings.dedup_hours,
        sqs=sqs,
        sqs_queue_url=settings.sqs_queue_url,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"cdp webhooks batch: flushing every {settings.max_records} events or {settings.max_age_seconds:g}s", flush=True
    )
    batcher.run(args.poll, stop)
    return 0


def add_commands(commands) -> None:
    """Add `webhooks serve|batch` to an argparse subparsers object."""
    webhooks = commands.add_parser("webhooks", help="the webhook receiver and its batcher")
    actions = webhooks.add_subparsers(dest="action", required=True)
    serve = actions.add_parser("serve", help="receive signed webhooks over HTTP (uvicorn)")
    serve.add_argument("--host", default=os.environ.get("CDP_WEBHOOK_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("CDP_WEBHOOK_PORT", "8787")))
    serve.set_defaults(handler=_serve)
    batch = actions.add_parser("batch", help="flush queued webhook events into the raw zone")
    batch.add_argument("--lake", help="lake URI (default: CDP_LAKE_URI or .cdp/lake)")
    batch.add_argument("--poll", type=float, default=1.0, help="seconds between rounds")
    batch.set_defaults(handler=_batch)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("cdp").setLevel(os.environ.get("CDP_LOG_LEVEL", "INFO"))
    root = argparse.ArgumentParser(prog="python -m cdp_ingest.webhooks")
    add_commands(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["webhooks", *(argv if argv is not None else sys.argv[1:])])
    return args.handler(args)

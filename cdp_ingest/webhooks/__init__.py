"""The webhook receiver: signed provider webhooks → a durable queue → batched into the raw zone.

`app` (the Starlette service), `providers` and `signatures` (what each provider sends and how it is
signed), `pg_queue` / `sqs_queue` (where an event waits once acknowledged), `batcher` (queue → raw
zone, exactly once), `config` (environment variables), `cli` (`cdp webhooks serve|batch`).
"""

"""How a batch of audience records reaches a destination.

- `FileSender`: Parquet under the destination's `uri` (local directory or s3://, through the lake
  resource's storage) or, with no uri, under the lake's `exports/{destination}/`.
- `HttpSender`: a JSON POST per batch, signed like the platform's own webhooks
  (`X-CDP-Signature: t=…,v1=hex HMAC-SHA256(secret, "{t}.{body}")`) and carrying an
  `Idempotency-Key` derived from the batch's content, so a receiver can drop a retried batch that
  had in fact arrived. 429 and 5xx (and connection errors) are retried by urllib3's `Retry`:
  exponential backoff with jitter, `Retry-After` honoured; after `max_tries` the batch is returned
  as failed with the reason, for the dead-letter zone.

Both also carry out a forget request (`forget`): an HTTP destination receives one signed batch
of `op: delete` records (the person's `cdp_customer_id`s and identifier hashes, never raw values);
a file destination's files are rewritten without the person by the forget itself (`cdp_privacy`).
"""

import hashlib
import json
import time
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from cdp_activation.config import Destination
from cdp_common.signatures import sign_timestamped
from cdp_resources.lake import LakeResource

RETRY_STATUSES = (429, *range(500, 600))


@dataclass
class Delivery:
    ok: bool
    tries: int
    reason: str = ""
    body: bytes = b""  # what was sent, kept for the dead-letter zone when not delivered


def batch_body(destination: Destination, audience: dict, batch: int, records: list[dict]) -> tuple[bytes, str]:
    """The batch as JSON bytes and its idempotency key (same audience, day, batch and records: same key)."""
    content = json.dumps(records, sort_keys=True, default=str).encode()
    key = hashlib.sha256(
        f"{destination.name}|{json.dumps(audience, sort_keys=True)}|{batch}|".encode() + content
    ).hexdigest()
    body = json.dumps(
        {**audience, "destination": destination.name, "batch": batch, "idempotency_key": key, "records": records},
        default=str,
    ).encode()
    return body, key


class HttpSender:
    """POSTs batches to one HTTP destination with retries (one connection pool per sync)."""

    def __init__(self, destination: Destination):
        self.destination = destination
        retry = Retry(
            total=destination.max_tries - 1,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,
            backoff_factor=destination.backoff_seconds,
            backoff_jitter=destination.backoff_seconds,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def send(self, audience: dict, batch: int, records: list[dict]) -> Delivery:
        return self._post(*batch_body(self.destination, audience, batch, records))

    def forget(self, tenant: str, records: list[dict]) -> Delivery:
        """Ask the destination to delete a forgotten person: `records` (each with the person's
        `cdp_customer_id` and identifier hashes) sent as one batch of `op: delete`."""
        deletes = [{"op": "delete", **record} for record in records]
        return self._post(*batch_body(self.destination, {"tenant": tenant, "op": "delete"}, 0, deletes))

    def _post(self, body: bytes, key: str) -> Delivery:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, **self.destination.headers}
        secret = self.destination.secret()
        if secret:
            headers["X-CDP-Signature"] = sign_timestamped(secret, body, int(time.time()))
        try:
            response = self.session.post(
                self.destination.url, data=body, headers=headers, timeout=self.destination.timeout_seconds
            )
        except requests.RequestException as error:
            return Delivery(False, self.destination.max_tries, f"{type(error).__name__}: {error}"[:500], body)
        tries = len(response.raw.retries.history) + 1 if response.raw.retries else 1
        if response.ok:
            return Delivery(True, tries)
        return Delivery(False, tries, f"HTTP {response.status_code} after {tries} tries: {response.text[:200]}", body)

    def clear(self, audience: dict) -> None:
        """Nothing to remove before a rerun: the receiver drops batches whose idempotency key it has seen."""

    def close(self) -> None:
        self.session.close()


class FileSender:
    """Writes each batch as one Parquet file (records with their `op`) under the destination's base."""

    def __init__(self, destination: Destination, lake: LakeResource):
        self.destination = destination
        if destination.uri:
            self.target, self.prefix = (
                LakeResource(base_uri=destination.uri, s3_endpoint_url=lake.s3_endpoint_url, s3_region=lake.s3_region),
                "",
            )
        else:
            self.target, self.prefix = lake, f"exports/{destination.name}/"

    def key(self, audience: dict, batch: int) -> str:
        return (
            f"{self.prefix}{audience['tenant']}/{audience['segment']}/date={audience['date']}/"
            f"{audience['mode']}-{batch:05d}.parquet"
        )

    def send(self, audience: dict, batch: int, records: list[dict]) -> Delivery:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(records), sink, compression="zstd")
        self.target.write_bytes(self.key(audience, batch), sink.getvalue().to_pybytes())
        return Delivery(True, 1)

    def clear(self, audience: dict) -> None:
        """Remove an earlier run's files of this audience and day (a rerun replaces them)."""
        for obj in self.target.list(self.key(audience, 0).rsplit("/", 1)[0] + "/"):
            self.target.delete(obj.key)

    def close(self) -> None:
        """Nothing held open: each batch is published whole."""

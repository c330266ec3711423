"""The lake: a base URI that is a local directory (default `.cdp/lake`) or `s3://bucket/prefix`.

Keys are relative paths such as `raw/acme/shopify/orders/year=2026/month=01/day=01/x.ndjson.gz`.
Writes are published atomically: a local file is written beside its target and renamed into place;
an S3 object appears whole when its upload completes. Readers never see half a file.
S3 goes through boto3, with the client from dagster-aws's `S3Resource`; Spark reaches the same
bucket through Hadoop's S3A with the settings `spark_settings` gives, and delta-rs (`delta_log`,
a Delta table's log without Spark) with the endpoint and region given here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from dagster_aws.s3.sensor import get_objects
from deltalake import DeltaTable
from pydantic import Field, PrivateAttr

_TEMP_MARK = ".tmp-"


class LakeObject(NamedTuple):
    key: str
    size: int
    last_modified: datetime


class _LocalLake:
    def __init__(self, root: str):
        self.root = Path(root).expanduser().resolve()

    def path(self, key: str) -> Path:
        return self.root / key

    def list(self, prefix: str) -> Iterator[LakeObject]:
        base = self.path(prefix)
        start = base if base.is_dir() else base.parent
        if not start.exists():
            return
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames.sort()
            for name in sorted(filenames):
                if _TEMP_MARK in name:
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    stat = full.stat()
                    yield LakeObject(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))

    def list_since(self, prefix: str, since: datetime) -> Iterator[LakeObject]:
        return (obj for obj in self.list(prefix) if obj.last_modified >= since)

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def publish_file(self, key: str, source: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}{_TEMP_MARK}{uuid.uuid4().hex}")
        with open(source, "rb") as src, open(temp, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(temp, target)
        os.utime(target)

    def write_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}{_TEMP_MARK}{uuid.uuid4().hex}")
        with open(temp, "wb") as dst:
            dst.write(data)
            dst.flush()
            os.fsync(dst.fileno())
        if if_absent:
            try:
                os.link(temp, target)  # fails when the target exists
            finally:
                temp.unlink()
        else:
            os.replace(temp, target)
        os.utime(target)  # modified = published, so a listing since a cursor never misses it

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def spark_path(self, key: str) -> str:
        return str(self.path(key))


class _S3Lake:
    """Objects under s3://bucket/prefix; listings since a time go through dagster-aws's `get_objects`."""

    def __init__(self, bucket: str, prefix: str, client):
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def list(self, prefix: str) -> Iterator[LakeObject]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._full(prefix)
        ):
            for obj in page.get("Contents", []):
                yield LakeObject(obj["Key"][strip:], obj["Size"], obj["LastModified"])

    def list_since(self, prefix: str, since: datetime) -> Iterator[LakeObject]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        # get_objects is exclusive of `since`; S3 times have 1-second granularity, so include it.
        for obj in get_objects(
            self.bucket, self._full(prefix), since_last_modified=since - timedelta(microseconds=1), client=self.client
        ):
            yield LakeObject(obj["Key"][strip:], obj["Size"], obj["LastModified"])

    def read_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"].read()

    def publish_file(self, key: str, source: Path) -> None:
        self.client.upload_file(str(source), self.bucket, self._full(key))

    def write_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        conditional = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, **conditional)
        except self.client.exceptions.ClientError as error:
            if error.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise FileExistsError(key) from error
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))

    def spark_path(self, key: str) -> str:
        return f"s3a://{self.bucket}/{self._full(key)}"


class LakeResource(ConfigurableResource):
    """The data lake (raw zone, curated Delta tables, dead letters, sample-data truth)."""

    base_uri: str = Field(description="Local directory or s3://bucket/prefix (CDP_LAKE_URI)")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (CDP_S3_ENDPOINT_URL)")
    s3_region: str = Field(default="us-east-1", description="S3 region (CDP_S3_REGION)")
    _backend = PrivateAttr(default=None)

    @property
    def is_s3(self) -> bool:
        return self.base_uri.startswith("s3://")

    def _lake(self):
        if self._backend is None:
            if self.is_s3:
                parsed = urlparse(self.base_uri)
                client = S3Resource(endpoint_url=self.s3_endpoint_url, region_name=self.s3_region).get_client()
                self._backend = _S3Lake(parsed.netloc, parsed.path, client)
            else:
                self._backend = _LocalLake(self.base_uri)
        return self._backend

    def list(self, prefix: str = "") -> list[LakeObject]:
        """Every object whose key starts with `prefix`, sorted by key."""
        return sorted(self._lake().list(prefix))

    def list_since(self, prefix: str, since: datetime | None) -> list[LakeObject]:
        """Objects under `prefix` modified at or after `since` (all when None), oldest first."""
        objects = self._lake().list(prefix) if since is None else self._lake().list_since(prefix, since)
        return sorted(objects, key=lambda obj: (obj.last_modified, obj.key))

    def read_bytes(self, key: str) -> bytes:
        return self._lake().read_bytes(key)

    def is_delta_table(self, key: str) -> bool:
        """Whether a Delta table lives at `key` (it has a transaction log)."""
        return bool(self.list(f"{key}/_delta_log/"))

    def delta_log(self, key: str) -> DeltaTable | None:
        """The Delta table at `key` as delta-rs reads it (its log: files, partitions, statistics),
        None when there is none. On S3, credentials are what delta-rs finds: environment variables,
        an AWS profile (`AWS_PROFILE`) or the instance's role."""
        if not self.is_delta_table(key):
            return None
        if not self.is_s3:
            return DeltaTable(self.spark_path(key))
        options = {"AWS_REGION": self.s3_region}
        if self.s3_endpoint_url:
            options |= {"AWS_ENDPOINT_URL": self.s3_endpoint_url, "AWS_ALLOW_HTTP": "true"}
        return DeltaTable(self.spark_path(key).replace("s3a://", "s3://", 1), storage_options=options)

    def write_bytes(self, key: str, data: bytes, if_absent: bool = False) -> None:
        """Publish `data` at `key`; with `if_absent`, raise FileExistsError rather than replace a file."""
        self._lake().write_bytes(key, data, if_absent)

    def publish_file(self, key: str, source: Path) -> None:
        """Copy a local file to `key`, visible only once complete."""
        self._lake().publish_file(key, Path(source))

    def delete(self, key: str) -> None:
        self._lake().delete(key)

    def spark_path(self, key: str = "") -> str:
        """The path Spark reads `key` from (a local path, or s3a://)."""
        return self._lake().spark_path(key)

    def spark_settings(self) -> dict[str, str]:
        """The Hadoop settings Spark needs to reach this lake: for S3, S3A's for its bucket only, with
        the endpoint and region boto3 uses and the AWS SDK's default credential chain (environment,
        profile, container or instance role), as boto3 finds them. Nothing for a local lake."""
        if not self.is_s3:
            return {}
        bucket = f"fs.s3a.bucket.{urlparse(self.base_uri).netloc}"
        settings = {
            f"{bucket}.endpoint.region": self.s3_region,
            f"{bucket}.aws.credentials.provider": "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
        }
        if self.s3_endpoint_url:
            # S3-compatible servers (MinIO, moto, Ceph) name buckets in the path, not the host.
            settings |= {f"{bucket}.endpoint": self.s3_endpoint_url, f"{bucket}.path.style.access": "true"}
        return settings

"""The lake resource on a local directory and on S3 (moto's server over HTTP)."""

import pytest

from cdp_resources.lake import LakeResource


@pytest.fixture
def lake(any_lake) -> LakeResource:
    return any_lake


def test_write_read_list_delete(lake):
    lake.write_bytes("raw/acme/app/events/year=2026/month=01/day=02/b.ndjson.gz", b"two")
    lake.write_bytes("raw/acme/app/events/year=2026/month=01/day=01/a.ndjson.gz", b"one")
    lake.write_bytes("raw/globex/app/events/year=2026/month=01/day=01/c.ndjson.gz", b"three!")

    listed = lake.list("raw/acme/")
    assert [obj.key for obj in listed] == [
        "raw/acme/app/events/year=2026/month=01/day=01/a.ndjson.gz",
        "raw/acme/app/events/year=2026/month=01/day=02/b.ndjson.gz",
    ]
    assert [obj.size for obj in listed] == [3, 3]
    assert lake.read_bytes(listed[1].key) == b"two"
    assert len(lake.list("raw/")) == 3
    assert [obj.key for obj in lake.list("raw/glo")] == ["raw/globex/app/events/year=2026/month=01/day=01/c.ndjson.gz"]

    lake.delete(listed[0].key)
    assert [obj.key for obj in lake.list("raw/acme/")] == [listed[1].key]
    assert lake.list("nothing/here/") == []


def test_overwrite_and_publish_file(lake, tmp_path):
    source = tmp_path / "export.csv"
    source.write_bytes(b"id,email\n1,a@b.com\n" * 10_000)
    lake.publish_file("drops/acme/export.csv", source)
    lake.write_bytes("drops/acme/small.txt", b"v1")
    lake.write_bytes("drops/acme/small.txt", b"v2")
    assert lake.read_bytes("drops/acme/export.csv") == source.read_bytes()
    assert lake.read_bytes("drops/acme/small.txt") == b"v2"
    assert [obj.key for obj in lake.list("drops/")] == ["drops/acme/export.csv", "drops/acme/small.txt"]


def test_write_if_absent_never_replaces(lake):
    lake.write_bytes("raw/t/p/s/file.ndjson.gz", b"first", if_absent=True)
    with pytest.raises(FileExistsError):
        lake.write_bytes("raw/t/p/s/file.ndjson.gz", b"second", if_absent=True)
    assert lake.read_bytes("raw/t/p/s/file.ndjson.gz") == b"first"
    assert [obj.key for obj in lake.list("raw/")] == ["raw/t/p/s/file.ndjson.gz"]


def test_spark_paths(lake):
    path = lake.spark_path("curated/events")
    if lake.is_s3:
        assert path.startswith("s3a://cdp-") and path.endswith("/lake/curated/events")
    else:
        assert path.endswith("/lake/curated/events") and path.startswith("/")


def test_local_publish_is_atomic(tmp_path):
    """A half-written local file is never listed: writes go to a hidden temp name first."""
    lake = LakeResource(base_uri=str(tmp_path / "lake"))
    lake.write_bytes("raw/x/file.ndjson.gz", b"done")
    (tmp_path / "lake/raw/x/.file2.ndjson.gz.tmp-abc").write_bytes(b"partial")
    assert [obj.key for obj in lake.list("raw/")] == ["raw/x/file.ndjson.gz"]

"""Spark with Delta Lake: jars from the project cache, partition writes replaced in one transaction."""

import json
import os
from datetime import date
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from cdp_resources.delta_tables import replace_partitions
from cdp_resources.spark import (
    LOCAL_FILE_SYSTEM,
    SESSION_SETTINGS,
    SHUFFLE_ROW_CHECKSUMS,
    SNAPSHOT_PARTITIONS,
    delta_spark_config,
    is_connect,
    local_cores,
)
from cdp_resources.spark_jars import jar_cache_dir
from cdp_transform.normalise import timestamp as parse_event_time
from tests.conftest import dictionary_encoded

CLUSTER_MASTERS = ("local-cluster[2,1,1024]", "spark://127.0.0.1:7077", "sc://127.0.0.1:15002")


def test_session_uses_cached_delta_jars(spark):
    jars = spark.conf.get("spark.jars").split(",")
    assert any("delta-spark_4.2_2.13" in jar for jar in jars)
    assert all(jar.startswith(str(jar_cache_dir())) for jar in jars)
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def _shuffle_exchanges(plan):
    """The ShuffleExchangeExec nodes of an executed (JVM) physical plan, through adaptive stages."""
    name = plan.getClass().getSimpleName()
    if name == "AdaptiveSparkPlanExec":
        yield from _shuffle_exchanges(plan.finalPhysicalPlan())
        return
    if name == "ShuffleQueryStageExec":
        yield from _shuffle_exchanges(plan.plan())
        return
    if name == "ShuffleExchangeExec":
        yield plan
    children = plan.children()
    for i in range(children.size()):
        yield from _shuffle_exchanges(children.apply(i))


def test_shuffles_hash_no_rows_in_local_mode(spark):
    counts = spark.range(1000).groupBy((F.col("id") % 7).alias("k")).count()
    counts.collect()
    exchanges = list(_shuffle_exchanges(counts._jdf.queryExecution().executedPlan()))
    assert exchanges
    assert [len(exchange.shuffleDependency().rowBasedChecksums()) for exchange in exchanges] == [0] * len(exchanges)


def test_shuffle_row_checksums_are_off_only_where_no_executor_can_be_lost():
    for master in ("local[*]", "local"):
        assert {key: delta_spark_config(master)[key] for key in SHUFFLE_ROW_CHECKSUMS} == dict.fromkeys(
            SHUFFLE_ROW_CHECKSUMS, "false"
        )
    for master in CLUSTER_MASTERS:
        assert not set(SHUFFLE_ROW_CHECKSUMS) & delta_spark_config(master).keys()


def test_listing_runs_a_task_per_local_core_and_clusters_keep_sparks_default():
    key = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
    assert delta_spark_config("local[3]")[key] == "3"
    assert delta_spark_config("local[2,4]")[key] == "2"
    assert delta_spark_config("local")[key] == "1"
    assert delta_spark_config("local[*]")[key] == str(os.cpu_count())
    for master in CLUSTER_MASTERS:
        assert local_cores(master) is None
        assert key not in delta_spark_config(master)


def test_delta_rebuilds_table_state_in_one_task_locally_and_in_four_on_clusters(spark):
    assert spark.conf.get(SNAPSHOT_PARTITIONS) == "1"  # the test session is local
    for master in CLUSTER_MASTERS:
        if not is_connect(master):  # a Spark Connect server sets it for its own master
            assert delta_spark_config(master)[SNAPSHOT_PARTITIONS] == "4"


def test_a_spark_connect_client_sets_only_its_sessions_settings():
    """The server owns the JVM, the jars and the static settings; the client names it and sets its
    session's (a static setting sent by the client only draws a warning from the server)."""
    assert delta_spark_config("sc://127.0.0.1:15002", {"spark.sql.shuffle.partitions": 4}) == {
        "spark.remote": "sc://127.0.0.1:15002",
        **SESSION_SETTINGS,
        "spark.sql.shuffle.partitions": "4",
    }


def test_local_paths_go_through_the_projects_file_system_with_hadoops_permissions_and_links(spark, tmp_path):
    """Both of Hadoop's APIs reach `file:` paths through the project's classes (which set permissions
    and read links with java.nio, not a `chmod` or `readlink` process per file); what they write
    has the permissions Hadoop gives (its umask, 022), and a symbolic link still reads as one."""
    jvm, conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    uri = jvm.java.net.URI(tmp_path.as_uri())
    file_system = jvm.org.apache.hadoop.fs.FileSystem.get(uri, conf)
    assert file_system.getClass().getName() == "cdp.LocalFileSystem"
    assert (
        jvm.org.apache.hadoop.fs.FileContext.getFileContext(uri, conf).getDefaultFileSystem().getClass().getName()
        == "cdp.LocalFs"
    )

    path = tmp_path / "table"
    spark.range(20).selectExpr("id", "id % 3 AS part").write.format("delta").partitionBy("part").save(str(path))
    assert spark.read.format("delta").load(str(path)).count() == 20
    modes = {p.relative_to(path).as_posix(): p.stat().st_mode & 0o777 for p in path.rglob("*")}
    assert {mode for name, mode in modes.items() if (path / name).is_dir()} == {0o755}
    assert {mode for name, mode in modes.items() if (path / name).is_file()} == {0o644}
    assert (
        any(name.startswith("part=") and name.endswith(".parquet") for name in modes)
        and "_delta_log/00000000000000000000.json" in modes
    )

    # Links read as Hadoop's own local file system reads them (which finds no link behind a `file:` URI).
    target, link = tmp_path / "target.txt", tmp_path / "link.txt"
    target.write_text("x")
    link.symlink_to(target)
    hadoops = jvm.org.apache.hadoop.fs.LocalFileSystem()
    hadoops.initialize(uri, conf)
    for name in (str(link), link.as_uri(), str(target), target.as_uri()):
        ours, theirs = (fs.getFileLinkStatus(jvm.org.apache.hadoop.fs.Path(name)) for fs in (file_system, hadoops))
        assert (ours.isSymlink(), str(ours.getSymlink()) if ours.isSymlink() else None) == (
            theirs.isSymlink(),
            str(theirs.getSymlink()) if theirs.isSymlink() else None,
        )
    assert file_system.getFileLinkStatus(jvm.org.apache.hadoop.fs.Path(str(link))).isSymlink()


def test_only_local_masters_replace_hadoops_local_file_system():
    for master in ("local[*]", "local"):
        config = delta_spark_config(master)
        assert {key: config[key] for key in LOCAL_FILE_SYSTEM} == LOCAL_FILE_SYSTEM
        ours = config["spark.driver.extraClassPath"].split(os.pathsep)
        assert [Path(jar).name for jar in ours] == ["cdp-local-fs.jar", "cdp-parquet-writers.jar"]
        # A classpath of the user's own is kept, after the jars.
        theirs = delta_spark_config(master, {"spark.driver.extraClassPath": "/opt/a.jar:/opt/b.jar"})[
            "spark.driver.extraClassPath"
        ]
        assert theirs.split(os.pathsep) == [*ours, "/opt/a.jar", "/opt/b.jar"]
    for master in CLUSTER_MASTERS:
        assert not ({*LOCAL_FILE_SYSTEM, "spark.driver.extraClassPath"} & delta_spark_config(master).keys())


def test_replace_one_partition(spark, tmp_path):
    path = str(tmp_path / "orders")
    rows = [(1, "2026-01-01"), (2, "2026-01-01"), (3, "2026-01-02")]
    frame = spark.createDataFrame(rows, "id int, day string").withColumn("day", F.to_date("day"))
    replace_partitions(frame, path, "day", date(2026, 1, 1), date(2026, 1, 2))

    rerun = spark.createDataFrame([(10, "2026-01-02"), (11, "2026-01-02")], "id int, day string").withColumn(
        "day", F.to_date("day")
    )
    replace_partitions(rerun, path, "day", date(2026, 1, 2), date(2026, 1, 2))
    replace_partitions(rerun, path, "day", date(2026, 1, 2), date(2026, 1, 2))  # a rerun changes nothing

    table = spark.read.format("delta").load(path)
    assert sorted((r.id, str(r.day)) for r in table.collect()) == [
        (1, "2026-01-01"),
        (2, "2026-01-01"),
        (10, "2026-01-02"),
        (11, "2026-01-02"),
    ]
    history = DeltaTable.forPath(spark, path).history().select("version", "operation").collect()
    assert [h.operation for h in sorted(history)] == ["CREATE TABLE AS SELECT", "WRITE", "WRITE"]
    assert DeltaTable.forPath(spark, path).detail().select("partitionColumns").first()[0] == ["day"]


def test_statistics_are_kept_on_the_named_columns_only(spark, tmp_path):
    path = str(tmp_path / "events")
    frame = spark.createDataFrame(
        [("t1", "m1", "x", "2026-01-01")], "tenant_id string, message_id string, other string, day string"
    )
    replace_partitions(
        frame.withColumn("day", F.to_date("day")),
        path,
        "day",
        date(2026, 1, 1),
        date(2026, 1, 1),
        stats_columns=["tenant_id", "message_id"],
    )
    stats = [
        json.loads(row.stats)
        for row in spark.read.json(f"{path}/_delta_log/*.json").where("add IS NOT NULL").select("add.stats").collect()
    ]
    assert stats and all(set(s["minValues"]) == {"tenant_id", "message_id"} and s["numRecords"] == 1 for s in stats)


def test_rows_outside_the_days_fail_the_first_write_too(spark, tmp_path):
    path = str(tmp_path / "orders")
    frame = spark.createDataFrame([(1, "2026-01-01"), (2, "2026-01-03")], "id int, day string").withColumn(
        "day", F.to_date("day")
    )
    with pytest.raises(Exception, match="day 2026-01-03 is outside 2026-01-01..2026-01-02"):
        replace_partitions(frame, path, "day", date(2026, 1, 1), date(2026, 1, 2))
    assert not DeltaTable.isDeltaTable(spark, path)


def test_a_table_whose_files_were_deleted_is_written_again(spark, tmp_path):
    """Deleting a table's files object by object (as `cdp demo` clears the derived zones) leaves
    its directories, an empty transaction log among them, which Spark's catalog takes for a table."""
    path = tmp_path / "orders"
    frame = spark.createDataFrame([(1, "2026-01-01")], "id int, day string").withColumn("day", F.to_date("day"))
    replace_partitions(frame, str(path), "day", date(2026, 1, 1), date(2026, 1, 1))
    for file in [f for f in path.rglob("*") if f.is_file()]:
        file.unlink()
    spark._jvm.org.apache.spark.sql.delta.DeltaLog.clearCache()  # as a new process finds it
    assert (path / "_delta_log").is_dir() and not DeltaTable.isDeltaTable(spark, str(path))
    replace_partitions(frame.withColumn("id", F.lit(2)), str(path), "day", date(2026, 1, 1), date(2026, 1, 1))
    assert [r.id for r in spark.read.format("delta").load(str(path)).collect()] == [2]


def _newest_file_encoded(path: str) -> dict[str, bool]:
    """`dictionary_encoded` of the table's newest data file."""
    return dictionary_encoded(max(Path(path).rglob("*.parquet"), key=lambda f: f.stat().st_mtime_ns))


def test_only_the_named_columns_are_dictionary_encoded_in_every_write(spark, tmp_path):
    path = str(tmp_path / "events")
    frame = spark.range(2000).selectExpr(
        "'t1' AS tenant_id", "uuid() AS message_id", "id % 3 AS kind", "DATE'2026-01-01' AS day"
    )
    replace_partitions(
        frame, path, "day", date(2026, 1, 1), date(2026, 1, 1), dictionary_columns=["tenant_id", "kind", "day"]
    )
    assert _newest_file_encoded(path) == {"tenant_id": True, "message_id": False, "kind": True, "day": True}
    replace_partitions(frame, path, "day", date(2026, 1, 1), date(2026, 1, 1))  # the table keeps the setting
    assert _newest_file_encoded(path) == {"tenant_id": True, "message_id": False, "kind": True, "day": True}
    assert DeltaTable.forPath(spark, path).detail().first().properties == {
        "parquet.enable.dictionary#message_id": "false"
    }


def test_a_files_dictionary_settings_stay_its_own_when_another_file_is_started(spark):
    """Parquet's column writers are set up per file from that file's settings; in parquet-column
    1.17.0 they read the settings of whichever file was set up last in the JVM (apache/parquet-java
    #3497), so a table's file started while another table's was could be dictionary-encoded
    against its table's settings. The session loads the project's fix (`jvm/parquet_writers`)."""
    jvm = spark.sparkContext._jvm
    properties = jvm.org.apache.parquet.column.ParquetProperties
    column = jvm.org.apache.parquet.schema.MessageTypeParser.parseMessageType(
        "message m { required binary message_id (STRING); }"
    ).getColumns()[0]
    plain = properties.builder().withDictionaryEncoding("message_id", False).build()
    properties.builder().build()  # another file's settings, with dictionaries on
    assert plain.newValuesWriter(column).getClass().getSimpleName() == "PlainValuesWriter"


def test_event_time_formats_parse_to_the_same_instant(spark):
    values = [
        "2026-01-05T15:15:00.000Z",
        "1767626100000",
        "1767626100",
        "2026-01-05T10:15:00-05:00",
        "2026-01-05T20:45:00+05:30",
        "2026-01-05 15:15:00",
        "2026-01-05T15:15:00.000+0000",
        "not a time",
    ]
    frame = spark.createDataFrame([(v,) for v in values], "timestamp string")
    parsed = [row.ts for row in frame.select(parse_event_time("timestamp").alias("ts")).collect()]
    assert len({str(ts) for ts in parsed[:-1]}) == 1 and str(parsed[0]) == "2026-01-05 15:15:00"
    assert parsed[-1] is None

"""Spark with Delta Lake: the session settings and a Dagster resource built on dagster-pyspark.

`CDP_SPARK_MASTER` picks the cluster (`local[*]` by default, `spark://…`, `k8s://…`, or Spark
Connect `sc://…`, such as the project's own server, `cdp_resources/spark_server.py`). Settings are
sized for a small machine; `spark_config` overrides any of them. The session is created on first
use, so assets that never touch Spark never pay for it. Every session registers the project's JVM
functions (`JVM_FUNCTIONS`); another Spark Connect server needs their jars on its classpath (`cdp
jars list` prints them). `SparkDeltaResource.session_for(lake)` is the session set to reach a lake
(its S3A settings when it is in S3).
"""

import os
import sys
from typing import Any

from dagster_pyspark import LazyPySparkResource
from pydantic import Field
from pyspark.sql import SparkSession

from cdp_resources.lake import LakeResource
from cdp_resources.settings import spark_master, state_dir
from cdp_resources.spark_jars import (
    JVM_SOURCES,
    ensure_functions_jar,
    ensure_jars,
    ensure_local_fs_jar,
    ensure_parquet_writers_jar,
)

# The project's JVM functions (`cdp_resources/jvm/functions`): SQL name, class, return type.
JVM_FUNCTIONS = [("cdp_e164", "cdp.E164", "string")]
FUNCTIONS_REGISTERED = "cdp.jvmFunctions.registered"
# What makes Spark hash every row a shuffle writes (either of them).
SHUFFLE_ROW_CHECKSUMS = (
    "spark.sql.shuffle.orderIndependentChecksum.enabled",
    "spark.sql.shuffle.orderIndependentChecksum.enableFullRetryOnMismatch",
)
SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"
# Hadoop's local file system for both its APIs (FileSystem; FileContext, which Delta's log store
# commits through), as the project's JVM classes that start no `chmod` or `readlink` process.
LOCAL_FILE_SYSTEM = {
    "spark.hadoop.fs.file.impl": "cdp.LocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "cdp.LocalFs",
}
C2_LATER = "-XX:Tier4InvocationThreshold=15000 -XX:Tier4MinInvocationThreshold=1800 -XX:Tier4CompileThreshold=45000 -XX:Tier4BackEdgeThreshold=120000"
# Code C2 never compiles (C1 alone does): Janino, the SQL parser, the analyzer and optimizer, the
# generated query classes, serialisation. `-DisplayVMOutput` keeps the JVM's "directives added" off stdout.
C2_EXCLUDED = f"-XX:+UnlockDiagnosticVMOptions -XX:CompilerDirectivesFile={JVM_SOURCES / 'compiler-directives.json'} -XX:-DisplayVMOutput"


def local_cores(master: str) -> int | None:
    """The task slots of a local master (`local`, `local[4]`, `local[*]`, `local[4,2]`); None for a cluster."""
    if master == "local":
        return 1
    if not master.startswith("local["):
        return None
    slots = master.removeprefix("local[").rstrip("]").split(",")[0]
    return (os.cpu_count() or 1) if slots == "*" else int(slots)


def is_connect(master: str) -> bool:
    """Whether `master` names a Spark Connect server (`sc://…`) rather than a cluster manager."""
    return master.startswith("sc://")


# What a session sets for itself (runtime SQL settings): a Spark Connect client sets these on its
# session too, and leaves everything else to the server.
SESSION_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    # Let adaptive execution coalesce the shuffle partitions of cached plans too (the curated
    # assets cache their ruled rows): small tables then write a few files per day, not eight.
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
    # ... to partitions of the advisory size (64 MB), as Spark advises for shared clusters, not
    # to as many as there are cores: fewer, larger files and less work (docs/performance.md).
    "spark.sql.adaptive.coalescePartitions.parallelismFirst": "false",
    # Arrow batches to Python (the warehouse COPY, pandas UDFs) are bounded by rows (10,000), not
    # bytes: at any other value Spark re-sums every vector's buffer sizes after each row, a large
    # share of the warehouse load's JVM time (docs/performance.md). Int.MaxValue is Spark's "no limit".
    "spark.sql.execution.arrow.maxBytesPerBatch": "2147483647",
}


def delta_spark_config(master: str, overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """Spark settings for Delta Lake on `master`, with the Delta jars from the local cache. A Spark
    Connect client (`sc://…`) sets only its session's (`SESSION_SETTINGS`): the server owns the
    JVM, the jars and the static settings (the project's own server has these)."""
    overrides = {key: str(value) for key, value in (overrides or {}).items()}
    if is_connect(master):
        return {"spark.remote": master, **SESSION_SETTINGS, **overrides}
    state = state_dir()
    config = {
        "spark.app.name": "cdp",
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        **SESSION_SETTINGS,
        "spark.driver.memory": "4g",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": str(state / "spark-warehouse"),
        # The throughput collector: in local mode the driver JVM runs the tasks, and G1's concurrent
        # threads take CPU from them. The optimising JIT (C2) waits for three times the default
        # calls and loops: most generated query classes run briefly, and compiling them twice cost
        # about as much CPU as running them. Code that runs once per query (Janino compiling the
        # generated classes, the analyser, the parser) or briefly (most generated classes) is left
        # to C1 (`C2_EXCLUDED`): C2 kept compiling it all run. Figures: docs/performance.md.
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={state / 'derby'} -XX:+UseParallelGC {C2_LATER} {C2_EXCLUDED}",
        # The tasks Delta rebuilds a table's state in (its default, 50, is sized for large logs).
        SNAPSHOT_PARTITIONS: "4",
        # Spark keeps 100 compiled query classes by default, fewer than one curated run makes:
        # evicted ones were compiled again (Janino, then the JIT again).
        "spark.sql.codegen.cache.maxEntries": "1000",
        # PySpark records the Python call site of every Column function for error messages (four
        # round trips to the JVM per call), a large share of building the curated tables' plans
        # (docs/performance.md). Errors still name the failing expression and plan, not the Python
        # line that built it.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
    }
    cores = local_cores(master)
    if cores is not None:
        # Spark 4.2 hashes every row a shuffle writes (XXH64), so that a map stage recomputed after
        # a lost executor can be checked against its first output. In local mode the executor is
        # the driver: shuffle files are never lost without the whole run ending, and the hashes
        # are pure cost. Spark computes them when either setting is on (`ShuffleExchangeExec`), and
        # the second is on by default, so both go off. Clusters keep Spark's default.
        for key in SHUFFLE_ROW_CHECKSUMS:
            config[key] = "false"
        # A read of more than 32 paths lists them in a Spark job of one task per path (a curated
        # table reads many raw files): a task per core lists the same paths in parallel for a
        # fraction of the scheduling.
        config["spark.sql.sources.parallelPartitionDiscovery.parallelism"] = str(cores)
        # A local lake's Delta logs are small: Delta rebuilds a table's state (before each
        # replaceWhere, and for the first reader of a new version) in one task, not four, which
        # shortens every incremental run.
        config[SNAPSHOT_PARTITIONS] = "1"
        # `file:` paths through the project's local file system (`jvm/local_fs`): Hadoop's own,
        # less the process it starts per file and per link check without its native library. Its
        # jar is on the JVM's own classpath: Spark reads the session's jars through it. Clusters
        # keep Hadoop's: their executors would need the jar before any task.
        config.update(LOCAL_FILE_SYSTEM)
        # Parquet's column writers with settings of their own per file (`jvm/parquet_writers`):
        # with Spark's, a file written while another table's was started could take that table's
        # per-column dictionary settings. Before Spark's jars, so that its class is the one loaded.
        # A `spark_config` classpath of the user's own follows these jars rather than replacing
        # them: without the first, no session could load the file system named above.
        classpath = [
            ensure_local_fs_jar(),
            ensure_parquet_writers_jar(),
            overrides.pop("spark.driver.extraClassPath", ""),
        ]
        config["spark.driver.extraClassPath"] = os.pathsep.join(entry for entry in classpath if entry)
    jars = ensure_jars()
    return {**config, "spark.master": master, "spark.jars": ",".join([*jars, ensure_functions_jar(jars)]), **overrides}


def delta_table_name(path: str) -> str:
    """The SQL name of the Delta table at `path` (`delta.`…``), for SQL and `writeTo`."""
    return "delta.`" + path.replace("`", "``") + "`"


def get_spark_session(master: str | None = None, overrides: dict[str, Any] | None = None) -> SparkSession:
    """The process's Spark session with Delta Lake, created on first call and reused afterwards."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers run Python UDFs and pandas conversions: they need this interpreter, not `python3`.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    master = master or spark_master()
    builder = SparkSession.builder
    for key, value in delta_spark_config(master, overrides).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if not is_connect(master):  # a Spark Connect server keeps its own log level
        session.sparkContext.setLogLevel("WARN")
    # Once per session (a runtime setting marks it): registering again replaces the functions and logs a warning each time.
    if session.conf.get(FUNCTIONS_REGISTERED, None) != "true":
        for name, java_class, returns in JVM_FUNCTIONS:
            session.udf.registerJavaFunction(name, java_class, returns)
        session.conf.set(FUNCTIONS_REGISTERED, "true")
    return session


class SparkDeltaResource(LazyPySparkResource):
    """A lazily created Spark session with Delta Lake (dagster-pyspark's LazyPySparkResource)."""

    master: str = Field(
        default_factory=spark_master, description="Spark master: local[*], spark://, k8s:// or sc:// (CDP_SPARK_MASTER)"
    )
    spark_config: dict[str, Any] = Field(default_factory=dict, description="Spark settings overriding the defaults")

    @property
    def spark_session(self) -> SparkSession:
        return get_spark_session(self.master, self.spark_config)

    @property
    def spark_context(self) -> Any:
        return self.spark_session.sparkContext

    def session_for(self, lake: LakeResource) -> SparkSession:
        """The session, set to read and write `lake` (its S3A settings, as runtime settings that
        every query's Hadoop configuration takes up, on the driver and the executors)."""
        session = self.spark_session
        for key, value in lake.spark_settings().items():
            session.conf.set(key, value)
        return session

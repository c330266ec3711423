"""Spark's extra jars (Delta Lake, libphonenumber, S3A) fetched from Maven Central with `mvn` into a
project-local cache, and the project's own JVM classes (`jvm/`: functions, a local file system)
compiled with `javac` beside them.

Spark's own Ivy resolver is not used: `mvn` honours the machine's Maven settings and mirrors, and
the resolved jar list is cached under `.cdp/jars`, so once fetched no network is needed. Jars that
pyspark already ships (Hadoop, Jackson, Parquet, Scala …) are left out so Spark's versions win.
"""

import hashlib
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pyspark

from cdp_resources.settings import state_dir

DELTA_VERSION = "4.4.0"
# The Java library Python's phonenumbers ports, at the version requirements.lock pins phonenumbers
# to (same metadata, so the JVM and Python read a number alike).
LIBPHONENUMBER_VERSION = "9.0.43"
# S3A (Hadoop's s3a:// file system, for a lake on S3) at the Hadoop version pyspark ships, with the
# AWS SDK modules it needs at the version that Hadoop release was built against. hadoop-aws asks
# for the SDK's `bundle`, every AWS service in one 686 MB jar; the S3 modules are 18 MB.
HADOOP_VERSION = "3.5.0"
AWS_SDK_VERSION = "2.35.4"
SPARK_ARTIFACTS = (
    f"io.delta:delta-spark_4.2_2.13:{DELTA_VERSION}",
    f"com.googlecode.libphonenumber:libphonenumber:{LIBPHONENUMBER_VERSION}",
    f"org.apache.hadoop:hadoop-aws:{HADOOP_VERSION}",
    f"software.amazon.awssdk:s3:{AWS_SDK_VERSION}",
    f"software.amazon.awssdk:s3-transfer-manager:{AWS_SDK_VERSION}",
)
EXCLUDED_ARTIFACTS = ("software.amazon.awssdk:bundle",)
JVM_SOURCES = Path(__file__).parent / "jvm"
FUNCTIONS_SOURCES, LOCAL_FS_SOURCES = JVM_SOURCES / "functions", JVM_SOURCES / "local_fs"
PARQUET_WRITERS_SOURCES = JVM_SOURCES / "parquet_writers"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_JAR_NAME = re.compile(r"^(?P<artifact>.+?)-\d[\w.\-]*\.jar$")

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>cdp</groupId><artifactId>spark-jars</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""


class JarFetchError(RuntimeError):
    pass


def jar_cache_dir() -> Path:
    return state_dir() / "jars"


def _artifact_name(jar_file: str) -> str:
    match = _JAR_NAME.match(jar_file)
    return match.group("artifact") if match else jar_file


def spark_bundled_artifacts() -> set[str]:
    """Artifact names of the jars pyspark ships (without versions)."""
    return {_artifact_name(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}


def _pom_for(artifacts: tuple[str, ...], excluded: tuple[str, ...]) -> str:
    exclusions = "".join(
        f"<exclusion><groupId>{group}</groupId><artifactId>{artifact}</artifactId></exclusion>"
        for group, artifact in (coordinate.split(":") for coordinate in excluded)
    )
    deps = []
    for coordinate in artifacts:
        group, artifact, version = coordinate.split(":")
        deps.append(
            f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
            f"<version>{version}</version><exclusions>{exclusions}</exclusions></dependency>"
        )
    return _POM.format(dependencies="\n".join(deps))


def ensure_jars(
    artifacts: tuple[str, ...] = SPARK_ARTIFACTS,
    cache_dir: Path | None = None,
    excluded: tuple[str, ...] = EXCLUDED_ARTIFACTS,
) -> list[str]:
    """Absolute paths of `artifacts` and their runtime dependencies but the `excluded` ones
    (`group:artifact`), fetching them on first use."""
    cache_dir = cache_dir or jar_cache_dir()
    key = hashlib.sha256("\n".join([*sorted(artifacts), *(f"-{e}" for e in sorted(excluded))]).encode()).hexdigest()[
        :12
    ]
    target = cache_dir / key
    listing = target / "jars.txt"
    if listing.exists():
        return [str(target / name) for name in listing.read_text().split()]

    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarFetchError("Spark's jars are not cached and `mvn` is not on PATH: install Maven")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=cache_dir))
    (staging / "pom.xml").write_text(_pom_for(artifacts, excluded))
    command = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(staging / "pom.xml"),
        f"-Dmaven.repo.local={cache_dir / 'm2'}",
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise JarFetchError(
            f"mvn could not fetch {', '.join(artifacts)}:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        )

    bundled = spark_bundled_artifacts()
    kept = []
    for jar in sorted(staging.glob("*.jar")):
        if _artifact_name(jar.name) in bundled:
            jar.unlink()
        else:
            kept.append(jar.name)
    (staging / "pom.xml").unlink()
    (staging / "jars.txt").write_text("\n".join(kept) + "\n")
    try:
        staging.rename(target)
    except OSError:  # another process published the same set first
        shutil.rmtree(staging, ignore_errors=True)
    return [str(target / name) for name in kept]


def ensure_functions_jar(classpath: list[str], cache_dir: Path | None = None) -> str:
    """The jar of the project's JVM functions (`jvm/functions`), compiled against pyspark's jars and
    `classpath` on first use."""
    return _compiled_jar("functions", FUNCTIONS_SOURCES, classpath, cache_dir)


def ensure_local_fs_jar(cache_dir: Path | None = None) -> str:
    """The jar of the project's local file system (`jvm/local_fs`), compiled against pyspark's jars
    on first use: apart from the functions, as it goes on the JVM's own classpath."""
    return _compiled_jar("local-fs", LOCAL_FS_SOURCES, [], cache_dir)


def ensure_parquet_writers_jar(cache_dir: Path | None = None) -> str:
    """The jar of the project's fix to Parquet's column writers (`jvm/parquet_writers`: each file keeps
    its own settings when several are written at once), compiled on first use: it goes on the JVM's
    own classpath, before Spark's Parquet jars."""
    return _compiled_jar("parquet-writers", PARQUET_WRITERS_SOURCES, [], cache_dir)


def _compiled_jar(name: str, source_dir: Path, classpath: list[str], cache_dir: Path | None) -> str:
    """The jar `cdp-{name}.jar` of the Java sources under `source_dir`, compiled with `javac` against
    pyspark's jars and `classpath` on first use and cached by the sources' hash."""
    sources = sorted(source_dir.rglob("*.java"))
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    jar = (cache_dir or jar_cache_dir()) / f"{name}-{key}" / f"cdp-{name}.jar"
    if jar.exists():
        return str(jar)
    javac = shutil.which("javac")
    if javac is None:
        raise JarFetchError(
            f"the project's JVM classes ({name}) are not compiled and `javac` is not on PATH: install a JDK 17"
        )
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jar.parent) as classes:
        spark_jars = str(Path(pyspark.__file__).parent / "jars" / "*")
        result = subprocess.run(
            [
                javac,
                "--release",
                "17",
                "-nowarn",
                "-d",
                classes,
                "-cp",
                ":".join([spark_jars, *classpath]),
                *map(str, sources),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise JarFetchError(f"javac could not compile {source_dir}:\n{result.stderr[-3000:]}")
        staging = jar.with_suffix(".partial")
        with zipfile.ZipFile(staging, "w") as archive:
            for compiled in sorted(Path(classes).rglob("*.class")):
                archive.write(compiled, compiled.relative_to(classes).as_posix())
        staging.rename(jar)
    return str(jar)

"""The project's own Spark Connect server: one long-lived Spark JVM under `.cdp/spark-server` that
Dagster runs reach at `sc://127.0.0.1:PORT` (`CDP_SPARK_MASTER`), instead of each run starting a
JVM of its own.

A run that starts its own JVM pays the JIT compiler's warm-up every time; on a warm server it does
not (docs/performance.md has the figures). The server has the project's Spark settings and jars (`delta_spark_config`: Delta, the
JVM functions, S3A) and runs Spark on `local[*]` (`CDP_SPARK_SERVER_MASTER` for a cluster). It
listens on 127.0.0.1 only. `cdp spark-server start|stop|status|url`.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from cdp_resources.local_ports import free_port, port_in_use
from cdp_resources.settings import state_dir
from cdp_resources.spark import delta_spark_config

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


class SparkServerError(RuntimeError):
    pass


@dataclass
class SparkConnectServer:
    """A Spark Connect server whose state (pid, port, log) lives in `home`."""

    home: Path
    master: str = "local[*]"
    overrides: dict[str, str] = field(default_factory=dict)  # Spark settings over `delta_spark_config`'s

    @classmethod
    def default(cls) -> "SparkConnectServer":
        return cls(state_dir() / "spark-server", os.environ.get("CDP_SPARK_SERVER_MASTER", "local[*]"))

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    def _read(self, name: str) -> int | None:
        path = self.home / name
        return int(path.read_text()) if path.exists() else None

    @property
    def port(self) -> int | None:
        return self._read("port")

    def url(self) -> str:
        """The Spark Connect URL (`CDP_SPARK_MASTER`) of the server."""
        if self.port is None:
            raise SparkServerError(f"no Spark Connect server has been started under {self.home}")
        return f"sc://127.0.0.1:{self.port}"

    def pid(self) -> int | None:
        """The server JVM's process id (the last one started)."""
        return self._read("pid")

    def _alive(self) -> bool:
        """Whether the server's process runs: its pid is alive and, where Linux's /proc tells, is
        still a Spark Connect server (not another process that got the pid of a stale pid file)."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        command = Path(f"/proc/{pid}/cmdline")
        return not command.parent.exists() or SERVER_CLASS.encode() in command.read_bytes()

    def running(self) -> bool:
        return self._alive() and port_in_use(self.port)

    def command(self, port: int) -> list[str]:
        """pyspark's own `spark-submit` starting the server on 127.0.0.1:`port` with the project's settings."""
        settings = delta_spark_config(
            self.master,
            {
                "spark.connect.grpc.binding.address": "127.0.0.1",
                "spark.connect.grpc.binding.port": port,
                # INFO logs a line per request: 26,000 for one curated run
                "spark.log.level": "WARN",
                **self.overrides,
            },
        )
        spark_submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
        return [
            str(spark_submit),
            "--class",
            SERVER_CLASS,
            *(f"--conf={key}={value}" for key, value in settings.items()),
            "spark-internal",
        ]

    def start(self, timeout: float = 180) -> "SparkConnectServer":
        """Start the server and wait until it listens; reuse it when it is already running. A
        restarted server keeps its port (its URL), unless something else has taken it."""
        if self.running():
            return self
        self.stop()  # a server that died, or one still starting: start afresh
        self.home.mkdir(parents=True, exist_ok=True)
        port = self.port if self.port is not None and not port_in_use(self.port) else free_port()
        (self.home / "port").write_text(str(port))
        env = {
            **os.environ,
            "SPARK_HOME": str(Path(pyspark.__file__).parent),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
        }  # the server's Python workers (Arrow UDFs) run this interpreter
        with open(self.log_file, "ab") as log:
            server = subprocess.Popen(
                self.command(port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        (self.home / "pid").write_text(str(server.pid))
        deadline = time.monotonic() + timeout
        while not port_in_use(port):
            if server.poll() is not None:
                raise SparkServerError(
                    f"the Spark Connect server exited ({server.returncode}); its log, {self.log_file}, ends:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise SparkServerError(
                    f"the Spark Connect server did not listen within {timeout:.0f} s; its log ends:\n{self._log_tail()}"
                )
            time.sleep(0.25)
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop the server (and its Python workers), if it runs: SIGTERM, then SIGKILL after
        `timeout` seconds; returns once it is gone, so that its port is free again."""
        pid, port = self.pid(), self.port
        if pid is not None and self._alive():
            os.killpg(pid, signal.SIGTERM)
            if not self._gone(pid, timeout):
                os.killpg(pid, signal.SIGKILL)
                self._gone(pid, timeout)
            # The JVM's main thread ends before its others (a defunct process, its port still
            # bound for a moment): done when the port is free. One that hangs in its shutdown,
            # holding the port, is killed.
            if not self._port_freed(port, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                self._port_freed(port, timeout)
        (self.home / "pid").unlink(missing_ok=True)

    def _port_freed(self, port: int, timeout: float) -> bool:
        """Whether nothing listens on `port` within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while port_in_use(port):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _gone(self, pid: int, timeout: float) -> bool:
        """Whether the server's process `pid` ends within `timeout` seconds (reaped when this
        process started it)."""
        deadline = time.monotonic() + timeout
        while self._alive():
            if time.monotonic() > deadline:
                return False
            with contextlib.suppress(ChildProcessError):  # not this process's child
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        return True

    def _log_tail(self, lines: int = 30) -> str:
        return (
            "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:]) if self.log_file.exists() else ""
        )

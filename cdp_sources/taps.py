"""Taps installed by the platform: one virtualenv per tap package and version, under `.cdp/taps/`.

A tap's dependencies (often old pins: `psycopg2-binary==2.9.3`, `jsonschema==3.2`) never meet
the platform's or another tap's. The virtualenv is made with uv on first use and reused; a
marker written after a successful install tells a complete one from one a crash left half-made,
which is removed and made again. A file lock keeps two runs from installing the same tap at once.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from cdp_resources.settings import state_dir

INSTALLED_MARKER = ".cdp-installed"


class TapInstallError(RuntimeError):
    """The tap's package cannot be installed or has no tap command; says which and why."""


def taps_dir() -> Path:
    return state_dir() / "taps"


def _uv() -> str:
    beside_python = Path(sys.executable).parent / "uv"
    found = str(beside_python) if beside_python.exists() else shutil.which("uv")
    if not found:
        raise TapInstallError("uv is not installed (the platform installs taps with it): run `make setup`")
    return found


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def venv_name(requirement: str, overrides: tuple[str, ...] = ()) -> str:
    """`<package>-<version>` (a URL requirement: `<package>-<hash of the URL>`), and `-o<hash>` of
    the overrides when there are any: other overrides, another virtualenv."""
    parsed = Requirement(requirement)
    name = f"{parsed.name}-{_digest(parsed.url) if parsed.url else next(iter(parsed.specifier)).version}"
    if not overrides:
        return name
    listed = "\n".join(sorted(overrides))
    return f"{name}-o{_digest(listed)}"


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def ensure_tap(
    requirement: str, executable: str | None = None, root: Path | None = None, overrides: tuple[str, ...] = ()
) -> Path:
    """The path of the tap's command, installing its package in its own virtualenv first if needed
    (with `overrides` replacing the package's own pins of those dependencies)."""
    venv = (root or taps_dir()) / venv_name(requirement, overrides)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / INSTALLED_MARKER).exists():
            _install(requirement, venv, overrides)
    return _command(requirement, venv, executable)


def _install(requirement: str, venv: Path, overrides: tuple[str, ...]) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    uv = _uv()
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    install = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), requirement]
    if overrides:
        override_file = venv.parent / f"{venv.name}.overrides.txt"
        override_file.write_text("\n".join(overrides) + "\n")
        install += ["--override", str(override_file)]
    steps = ([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], install)
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise TapInstallError(f"cannot install {requirement}: {_tail(result.stderr or result.stdout)}")
    (venv / INSTALLED_MARKER).write_text(requirement + "\n")


def _command(requirement: str, venv: Path, executable: str | None) -> Path:
    bin_dir = venv / "bin"
    if executable:
        if not (bin_dir / executable).exists():
            raise TapInstallError(f"{requirement} installs no command '{executable}'")
        return bin_dir / executable
    name = Requirement(requirement).name
    if (bin_dir / name).exists():
        return bin_dir / name
    taps = sorted(path.name for path in bin_dir.glob("tap-*") if path.name != "tap-tester")
    if len(taps) != 1:
        found = ", ".join(taps) or "none"
        raise TapInstallError(f"{requirement}: cannot tell its tap command (tap-* commands: {found}); set `executable`")
    return bin_dir / taps[0]

#!/usr/bin/env bash
# Prepares a fresh machine for the CDP: a virtualenv with the locked packages, the project itself
# (editable), PostgreSQL's server binaries (from the OS packages when missing) and Spark's jars
# (Delta, libphonenumber, the project's JVM functions compiled with javac), and Debian's Chromium
# for the /ui page's browser test.
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python 3.11+ is required (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
command -v java >/dev/null || { echo "setup: Java 17+ is required for Spark (no 'java' on PATH)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ requirements.lock -nt .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing packages from requirements.lock"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
  # Bytecode compiled once here: where PYTHONDONTWRITEBYTECODE is set (as on CI's machines) every
  # process would otherwise compile Dagster, Spark's and dbt's Python again at each import.
  .venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -r requirements.lock
  .venv/bin/uv pip install --quiet --python .venv/bin/python --no-deps -e .
  touch .venv/.installed
fi

# PostgreSQL's server binaries, and Debian's Chromium, which the /ui page's test drives through
# playwright (playwright's own browser downloads are not used: CI runs offline from its CDN); both
# from the OS's packages, in one apt-get run.
missing=()
.venv/bin/cdp postgres bindir >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # The OS package starts its own cluster; the CDP runs its own under .cdp/postgres instead.
    (service postgresql stop >/dev/null 2>&1 || true)
  else
    if [[ " ${missing[*]} " == *" chromium "* ]]; then
      echo "setup: /usr/bin/chromium not found; install your OS's 'chromium' package for tests/test_api.py" >&2
    fi
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
      echo "setup: PostgreSQL server binaries (initdb, pg_ctl) not found; install your OS's 'postgresql' package or set CDP_POSTGRES_URL" >&2
      [ -n "${CDP_POSTGRES_URL:-}" ] || exit 1
    fi
  fi
fi

.venv/bin/cdp jars fetch
# dbt's manifest, which the definitions load (they do not parse the project), prepared as
# dagster-dbt prepares a project for deployment, with the virtualenv's dbt.
PATH="$PWD/.venv/bin:$PATH" .venv/bin/dagster-dbt project prepare-and-package \
  --file cdp_resources/dbt_project.py >/dev/null

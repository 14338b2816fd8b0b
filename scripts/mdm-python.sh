#!/usr/bin/env bash
# Prints the path of a Python that has what MDM makes its databases with (SQLAlchemy, DuckDB and
# duckdb-engine, PyYAML; sqlite3 is in the standard library), creating the virtual environment
# outside the clone on first use. The tests run their MDM fixtures (tests/mdm/fixture.py) with it.
#
#   scripts/mdm-python.sh            create or reuse the venv, print its python
#
# The venv lives in $POOLWATCH_MDM_VENV (default ~/.cache/poolwatch/venv-mdm). DuckDB's Python
# package is pinned to the engine version the agent links (the duckdb crate 1.20000.1 bundles
# DuckDB 2.0.0, whose storage format the 2.0.x packages write).
set -euo pipefail

VENV=${POOLWATCH_MDM_VENV:-$HOME/.cache/poolwatch/venv-mdm}
REQUIREMENTS=(
    "sqlalchemy==2.1.9"
    "duckdb==2.0.1"
    "duckdb-engine==0.17.0"
    "pyyaml==6.0.3"
)
stamp="$VENV/.poolwatch-requirements"
want=$(printf '%s\n' "${REQUIREMENTS[@]}")

if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    printf 'mdm-python: creating %s\n' "$VENV" >&2
    if ! python3 -m venv --help >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        # Debian ships venv apart from python3.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    fi
    python3 -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2
    printf '%s\n' "$want" >"$stamp"
fi
printf '%s\n' "$VENV/bin/python"

#!/usr/bin/env bash
# The Python side: integrations/sqlalchemy's pytest suite and mypy --strict, in a virtual
# environment outside the clone (~/.cache/poolwatch/venv-sqlalchemy, reused between runs).
# Its tests run against the real PostgreSQL of scripts/services.sh, which this starts
# (idempotent). Extra arguments go to pytest (e.g. `scripts/test-python.sh -k workload`).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${POOLWATCH_PYTHON_VENV:-$HOME/.cache/poolwatch/venv-sqlalchemy}
PYTHON=${PYTHON:-python3}
PACKAGE=integrations/sqlalchemy

scripts/services.sh start
eval "$(scripts/services.sh env)"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# Editable, with the test extras: the package's .pth hook (the POOLWATCH_SQLALCHEMY switch) is
# installed into the venv, as a user's pip install would.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$PACKAGE[test]"

(cd "$PACKAGE" && "$VENV/bin/mypy")
(cd "$PACKAGE" && "$VENV/bin/python" -m pytest "$@")

#!/usr/bin/env bash
# The project's Python environment, outside the clone (~/.cache/poolwatch/venv-sqlalchemy,
# POOLWATCH_PYTHON_VENV to move it): integrations/sqlalchemy installed editable with its test
# extras, as a user's pip install would (its .pth hook, the POOLWATCH_SQLALCHEMY switch,
# included). Idempotent and quiet; prints the venv's python on stdout. Both the Rust suite (the
# agent's end-to-end tests run Python workloads) and the package's own pytest suite use it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${POOLWATCH_PYTHON_VENV:-$HOME/.cache/poolwatch/venv-sqlalchemy}
PYTHON=${PYTHON:-python3}
PACKAGE=integrations/sqlalchemy

if [ ! -x "$VENV/bin/python" ]; then
    echo "python-env: creating $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi
# pip only reinstalls what changed: a second run takes a second or two.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$PACKAGE[test]" >&2
echo "$VENV/bin/python"

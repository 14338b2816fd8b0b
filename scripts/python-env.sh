#!/usr/bin/env bash
# The project's Python environment, outside the clone (~/.cache/poolwatch/venv-sqlalchemy,
# POOLWATCH_PYTHON_VENV to move it): integrations/sqlalchemy installed editable with its test
# extras, as a user's pip install would (its .pth hook, the POOLWATCH_SQLALCHEMY switch,
# included), and tests/requirements.txt (MDM's libraries, for the Rust suite's datasets).
# Idempotent and quiet; prints the venv's python on stdout. Both the Rust suite (workloads,
# datasets, the OTLP receiver the push tests decode with) and the package's own pytest suite use
# it.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${POOLWATCH_PYTHON_VENV:-$HOME/.cache/poolwatch/venv-sqlalchemy}
PYTHON=${PYTHON:-python3}
PACKAGE=integrations/sqlalchemy

if [ ! -x "$VENV/bin/python" ]; then
    echo "python-env: creating $VENV" >&2
    # Debian ships venv and ensurepip apart from python3.
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null && [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    fi
    "$PYTHON" -m venv "$VENV" >&2
fi
# pip only reinstalls what changed: a second run takes a second or two.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$PACKAGE[test]" \
    -r tests/requirements.txt >&2
echo "$VENV/bin/python"

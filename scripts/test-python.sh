#!/usr/bin/env bash
# The Python side: integrations/sqlalchemy's pytest suite and mypy --strict, in the project's
# virtual environment (scripts/python-env.sh, outside the clone). Its tests run against the real
# PostgreSQL of scripts/services.sh, which this starts (idempotent). Extra arguments go to pytest
# (e.g. `scripts/test-python.sh -k workload`).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=integrations/sqlalchemy

scripts/services.sh start
eval "$(scripts/services.sh env)"
python=$(scripts/python-env.sh)
venv_bin=$(dirname "$python")

(cd "$PACKAGE" && "$venv_bin/mypy")
(cd "$PACKAGE" && "$python" -m pytest "$@")

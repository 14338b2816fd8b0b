#!/usr/bin/env bash
# The footprint benchmark: poolwatch beside Debian's prometheus-postgres-exporter on the same
# PostgreSQL, one PgBouncer with 100 pools. Prints figures and ratios; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/poolwatch/target}

scripts/services.sh start
eval "$(scripts/services.sh env)"
# The footprint bench runs the OTLP receiver of the tests (Python).
POOLWATCH_PYTHON=$(scripts/python-env.sh)
export POOLWATCH_PYTHON
cargo bench --bench footprint "$@"

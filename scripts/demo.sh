#!/usr/bin/env bash
# The main job on this machine alone: starts the local PostgreSQL and PgBouncer
# (scripts/services.sh), then runs the agent on config/poolwatch.yaml against them.
# Then look at http://127.0.0.1:9898/metrics, /api/v1/health, or run `poolwatch check`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/poolwatch/target}

scripts/services.sh start
eval "$(scripts/services.sh env)"
# The dev profile, as `cargo test` and `cargo run -- demo`: DuckDB compiles once for all of them.
exec cargo run -- run --config config/poolwatch.yaml "$@"

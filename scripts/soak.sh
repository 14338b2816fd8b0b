#!/usr/bin/env bash
# The soak: a release build of the agent for SECONDS (default 3600) against one private PgBouncer
# holding 200 pools (POOLWATCH_SOAK_POOLS=N for another count) plus the shared PostgreSQL,
# sampled every second with the shipped rules, under load that moves across the pools. Prints a
# line a minute, then RSS growth, CPU per cycle and /metrics latency at the start and the end,
# and what the load did; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/poolwatch/target}

seconds=${1:-3600}
if ! [[ $seconds =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/soak.sh [SECONDS]" >&2
    exit 2
fi
scripts/services.sh start
eval "$(scripts/services.sh env)"
POOLWATCH_SOAK_SECONDS=$seconds cargo bench --no-default-features --bench soak

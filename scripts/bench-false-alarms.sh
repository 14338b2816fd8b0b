#!/usr/bin/env bash
# The false-alarm bench: a healthy pool (private PostgreSQL + PgBouncer) under realistic load,
# watched with the shipped rules for 30 minutes (POOLWATCH_FALSE_ALARM_SECONDS to change it).
# Prints every alert that went pending or firing; a trustworthy rule set prints none.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/poolwatch/target}

scripts/services.sh start
eval "$(scripts/services.sh env)"
cargo bench --bench false_alarms "$@"

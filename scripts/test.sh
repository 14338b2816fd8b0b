#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and starts the real services it needs
# (PostgreSQL, PgBouncer, promtool) and the Python of the tests' OTLP receiver, then runs every
# unit and integration test.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test main failures`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build products live outside the clone so a fresh clone reuses them.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/poolwatch/target}

scripts/services.sh start
eval "$(scripts/services.sh env)"
eval "$(scripts/otlp-receiver-env.sh)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "\ntotal: %d passed, %d failed\n", passed, failed }' "$log"
exit "$status"

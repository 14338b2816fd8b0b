#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and starts the real services it needs
# (PostgreSQL, PgBouncer, promtool), checks formatting and lints (cargo fmt --check, cargo clippy
# with warnings as errors), then runs every Rust unit and integration test and the Python
# integration's suite (integrations/sqlalchemy, in a virtual environment outside the clone).
# Extra arguments go to `cargo test` alone (e.g. `scripts/test.sh --test main failures`) and skip
# the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build products live outside the clone so a fresh clone reuses them.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/poolwatch/target}

scripts/services.sh start
eval "$(scripts/services.sh env)"
# The Rust suite runs Python workloads through the SQLAlchemy integration too.
POOLWATCH_PYTHON=$(scripts/python-env.sh)
export POOLWATCH_PYTHON
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
lint_status=0
if [ $# -eq 0 ]; then
    cargo fmt --all -- --check || lint_status=1
    cargo clippy --all-targets -- -D warnings || lint_status=1
fi
cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
python_status=0
if [ $# -eq 0 ]; then
    scripts/test-python.sh 2>&1 | tee -a "$log"
    python_status=${PIPESTATUS[0]}
fi
set -e
# One closing line for the whole run, over every Rust test binary and the Python suite.
awk '/^test result:/ { passed += $4; failed += $6 }
     /^=+ .*(passed|failed).* in [0-9.]+s/ { python = $0; gsub(/^=+ | =+$/, "", python) }
     END {
         printf "\nrust: %d passed, %d failed\n", passed, failed
         if (python != "") print "python: " python
     }' "$log"
[ "$lint_status" -eq 0 ] || echo "lint: cargo fmt --check or cargo clippy failed (see above)"
[ "$status" -eq 0 ] && [ "$python_status" -eq 0 ] && [ "$lint_status" -eq 0 ]

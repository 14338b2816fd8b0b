#!/usr/bin/env bash
# `poolwatch benchmark --backend postgres --operation read` beside `pgbench -S`: the same
# PostgreSQL (the services' cluster on 55432), the same concurrency, the same table size, each
# in a private database created here. Prints both throughputs and their ratio; asserts nothing.
# The load generator must not be the bottleneck: poolwatch is built with --release (without
# DuckDB, which this backend does not use: no half-hour C++ build for it).
#
#   CLIENTS=8 DURATION=20 SCALE=10 ROUNDS=2 scripts/bench-benchmark.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/poolwatch/target}
CLIENTS=${CLIENTS:-8}
DURATION=${DURATION:-20}
SCALE=${SCALE:-10}
ROUNDS=${ROUNDS:-2}
DB=poolwatch_pgbench

scripts/services.sh start
eval "$(scripts/services.sh env)"
cargo build --release --no-default-features --bin poolwatch
poolwatch=$CARGO_TARGET_DIR/release/poolwatch
pgbench=$POOLWATCH_PG_BIN/pgbench
port=$POOLWATCH_PG_PORT
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_postgres "$POOLWATCH_PG_BIN/psql" -h "$POOLWATCH_SERVICES_DIR" -p "$port" -U postgres -d postgres \
    -qAt -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
DROP DATABASE IF EXISTS $DB;
CREATE DATABASE $DB OWNER mdm;
SQL
export PGPASSWORD=$POOLWATCH_APP_PASSWORD
rows=$((SCALE * 100000))
echo "pgbench -i -s $SCALE ($rows accounts) in database $DB"
"$pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$port" -U mdm "$DB" 2>&1 | tail -n 1

# The statement poolwatch's read runs (the spec's get_by_id: every column of one row of train,
# by a uniformly drawn id), on a table of the same columns and rows: what pgbench reaches with
# the query held equal, so that the ratio beside it measures the load generator alone.
"$POOLWATCH_PG_BIN/psql" -h 127.0.0.1 -p "$port" -U mdm -d "$DB" -qAt -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
CREATE TABLE mdm_train (id bigint PRIMARY KEY, feature_0 double precision NOT NULL,
    feature_1 double precision NOT NULL, feature_2 double precision NOT NULL,
    feature_3 double precision NOT NULL, label bigint NOT NULL, stats bigint);
INSERT INTO mdm_train SELECT g, random(), random(), random(), random(), g % 10, g
    FROM generate_series(1, $rows) AS g;
ANALYZE mdm_train;
SQL
printf '\\set id random(1, %d)\nSELECT * FROM mdm_train WHERE id = :id;\n' "$rows" >"$work/get_by_id.sql"

# pgbench's select-only script, with prepared statements like poolwatch's get_by_id.
run_pgbench() {
    "$pgbench" -S -M "$1" -c "$CLIENTS" -j 2 -T "$DURATION" -n -h 127.0.0.1 -p "$port" -U mdm "$DB" \
        | awk '/^tps = / { print $3 }'
}

# The same, running poolwatch's statement.
run_pgbench_same() {
    "$pgbench" -f "$work/get_by_id.sql" -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" -n \
        -h 127.0.0.1 -p "$port" -U mdm "$DB" | awk '/^tps = / { print $3 }'
}

# The same number of users on a pool of as many connections, checked out per request.
run_poolwatch() {
    "$poolwatch" benchmark --backend postgres --operation read \
        --url "postgres://mdm@127.0.0.1:$port/$DB" --dataset poolwatch_bench \
        --rows "$rows" --pool-size "$CLIENTS" --max-overflow 0 --concurrent-users "$CLIENTS" \
        --pre-ping "$1" --duration "$DURATION" --report "$work/read.json" 2>"$work/stderr" \
        || { cat "$work/stderr" >&2; exit 1; }
    python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["throughput_per_second"], 1))' "$work/read.json"
}

declare -a prepared simple same ours ours_ping
for round in $(seq 1 "$ROUNDS"); do
    prepared+=("$(run_pgbench prepared)")
    ours+=("$(run_poolwatch false)")
    same+=("$(run_pgbench_same)")
    simple+=("$(run_pgbench simple)")
    ours_ping+=("$(run_poolwatch true)")
    echo "round $round: pgbench -S prepared ${prepared[-1]} tps, poolwatch ${ours[-1]} ops/s," \
        "pgbench on poolwatch's statement ${same[-1]} tps, pgbench -S simple ${simple[-1]} tps," \
        "poolwatch with pre_ping ${ours_ping[-1]} ops/s"
done

mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.1f", s / NR }'; }
p=$(mean "${prepared[@]}"); s=$(mean "${simple[@]}"); o=$(mean "${ours[@]}"); op=$(mean "${ours_ping[@]}")
q=$(mean "${same[@]}")
echo
echo "concurrency $CLIENTS, ${DURATION}s per run, $ROUNDS rounds, $rows rows, same server"
printf '%-48s %10s\n' "pgbench -S -M prepared (tps)" "$p"
printf '%-48s %10s\n' "pgbench -S -M simple (tps)" "$s"
printf '%-48s %10s\n' "pgbench, poolwatch's statement, prepared (tps)" "$q"
printf '%-48s %10s\n' "poolwatch benchmark --operation read (ops/s)" "$o"
printf '%-48s %10s\n' "  same with pre_ping (ops/s)" "$op"
awk -v o="$o" -v p="$p" -v s="$s" -v op="$op" -v q="$q" 'BEGIN {
    printf "ratio poolwatch / pgbench -S prepared: %.2fx\n", o / p
    printf "ratio poolwatch / pgbench on its statement: %.2fx\n", o / q
    printf "ratio poolwatch / pgbench -S simple:   %.2fx\n", o / s
    printf "ratio with pre_ping / pgbench prepared: %.2fx\n", op / p
}'
as_postgres "$POOLWATCH_PG_BIN/psql" -h "$POOLWATCH_SERVICES_DIR" -p "$port" -U postgres -d postgres \
    -qAt -c "DROP DATABASE IF EXISTS $DB" >/dev/null

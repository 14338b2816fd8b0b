#!/usr/bin/env bash
# Installs (Debian packages) and starts the real services poolwatch is tested and demonstrated
# against: one PostgreSQL cluster and one PgBouncer on loopback ports of their own, so they never
# collide with a system cluster on 5432/6432. Idempotent: running it twice starts nothing twice.
# Alertmanager (prometheus-alertmanager, with amtool) is installed but not started: each test
# that needs one starts its own.
#
#   scripts/services.sh start    install what is missing, start PostgreSQL and PgBouncer
#   scripts/services.sh stop     stop both
#   scripts/services.sh status   say what runs where
#   scripts/services.sh env      print the environment the tests and the demo read (eval it)
#
# Everything lives under $POOLWATCH_SERVICES_DIR (default /tmp/poolwatch-services).
set -euo pipefail

DIR=${POOLWATCH_SERVICES_DIR:-/tmp/poolwatch-services}
PG_PORT=${POOLWATCH_PG_PORT:-55432}
PGBOUNCER_PORT=${POOLWATCH_PGBOUNCER_PORT:-56432}
# Demo credentials for a throw-away loopback cluster. The tests use them to prove that a password
# given to poolwatch never shows up in its output.
MONITOR_PASSWORD=monitor-pw-4f1c
APP_PASSWORD=mdm-pw-9a27
PGBOUNCER_PASSWORD=pgbouncer-pw-7d3e

# chromium renders the HTML report of analyze-benchmarks in its test (headless screenshots).
PACKAGES=(postgresql pgbouncer prometheus prometheus-postgres-exporter prometheus-alertmanager chromium)

log() { printf 'services: %s\n' "$*" >&2; }

pg_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$bin" ] || { log "no PostgreSQL server binaries under /usr/lib/postgresql"; exit 1; }
    printf '%s' "$bin"
}

# PostgreSQL and PgBouncer refuse to run as root: run them as the postgres user when we are root.
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_packages() {
    local missing=()
    command -v pgbouncer >/dev/null || missing+=(pgbouncer)
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v prometheus-postgres-exporter >/dev/null || missing+=(prometheus-postgres-exporter)
    command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
    command -v chromium >/dev/null || missing+=(chromium)
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
    [ ${#missing[@]} -eq 0 ] && return
    [ "$(id -u)" = 0 ] || { log "missing ${missing[*]}; run as root to install them"; exit 1; }
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's maintainer scripts try to start the system cluster; policy-rc.d may refuse, harmless.
    apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
}

wait_for_port() {
    local port=$1 name=$2
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "$name did not open port $port"; return 1
}

start_postgres() {
    local bin data=$DIR/pg
    bin=$(pg_bin)
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initdb $data"
        as_postgres "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
            -E UTF8 --locale=C >/dev/null
        cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$DIR'
max_connections = 300
superuser_reserved_connections = 3
shared_buffers = 64MB
fsync = off
EOF
    fi
    if as_postgres "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "PostgreSQL already running on $PG_PORT"
    else
        as_postgres "$bin/pg_ctl" -D "$data" -l "$DIR/postgres.log" -w start >/dev/null
        log "PostgreSQL started on $PG_PORT"
    fi
    local psql=("$bin/psql" -h "$DIR" -p "$PG_PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1)
    as_postgres "${psql[@]}" <<EOF
SET client_min_messages = warning;
SELECT 'CREATE ROLE monitor LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitor')\gexec
ALTER ROLE monitor PASSWORD '$MONITOR_PASSWORD';
GRANT pg_monitor TO monitor;
SELECT 'CREATE ROLE mdm LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mdm')\gexec
ALTER ROLE mdm PASSWORD '$APP_PASSWORD';
SELECT 'CREATE DATABASE mdm_demo OWNER mdm' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mdm_demo')\gexec
EOF
}

# Writes a PgBouncer ini for the shared instance; tests that kill or stop PgBouncer start their own.
write_pgbouncer_config() {
    local conf=$DIR/pgbouncer
    mkdir -p "$conf"
    cat >"$conf/userlist.txt" <<EOF
"pgbouncer" "$PGBOUNCER_PASSWORD"
"mdm" "$APP_PASSWORD"
EOF
    cat >"$conf/pgbouncer.ini" <<EOF
[databases]
mdm_demo = host=127.0.0.1 port=$PG_PORT dbname=mdm_demo pool_size=5 reserve_pool=2
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $conf/userlist.txt
admin_users = pgbouncer
pool_mode = transaction
default_pool_size = 10
max_client_conn = 500
logfile = $DIR/pgbouncer.log
pidfile = $DIR/pgbouncer.pid
EOF
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$conf"
    chmod 600 "$conf/userlist.txt"
}

start_pgbouncer() {
    write_pgbouncer_config
    if [ -f "$DIR/pgbouncer.pid" ] && kill -0 "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null; then
        log "PgBouncer already running on $PGBOUNCER_PORT"
        return
    fi
    as_postgres pgbouncer -d "$DIR/pgbouncer/pgbouncer.ini"
    wait_for_port "$PGBOUNCER_PORT" PgBouncer
    log "PgBouncer started on $PGBOUNCER_PORT"
}

stop_all() {
    if [ -f "$DIR/pgbouncer.pid" ]; then kill "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null || true; fi
    if [ -f "$DIR/pg/PG_VERSION" ]; then
        as_postgres "$(pg_bin)/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null 2>&1 || true
    fi
    log "stopped"
}

print_env() {
    cat <<EOF
export POOLWATCH_SERVICES_DIR=$DIR
export POOLWATCH_PG_PORT=$PG_PORT
export POOLWATCH_PGBOUNCER_PORT=$PGBOUNCER_PORT
export POOLWATCH_PG_BIN=$(pg_bin)
export POOLWATCH_PGBOUNCER_PASSWORD=$PGBOUNCER_PASSWORD
export POOLWATCH_POSTGRES_PASSWORD=$MONITOR_PASSWORD
export POOLWATCH_APP_PASSWORD=$APP_PASSWORD
EOF
}

case ${1:-start} in
start) install_packages; start_postgres; start_pgbouncer ;;
stop) stop_all ;;
status)
    as_postgres "$(pg_bin)/pg_ctl" -D "$DIR/pg" status || true
    if [ -f "$DIR/pgbouncer.pid" ] && kill -0 "$(cat "$DIR/pgbouncer.pid")" 2>/dev/null; then
        echo "PgBouncer running on $PGBOUNCER_PORT"
    else
        echo "PgBouncer not running"
    fi
    ;;
env) print_env ;;
*) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac

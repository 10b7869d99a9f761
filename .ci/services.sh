#!/usr/bin/env bash
# Local PostgreSQL 15 and Redis for development and tests, kept under .dev/ of the repository.
#
#   .ci/services.sh start  [pg|redis]...   start (idempotent), write .dev/services.env
#   .ci/services.sh stop   [pg|redis]...   stop what this script started
#   .ci/services.sh status                 print the state; exit 0 only if both run
#   .ci/services.sh running pg|redis       exit 0 if that service runs (quiet)
#
# PostgreSQL: 127.0.0.1:54329, user postgres, trust auth; data .dev/pg/data, socket .dev/run.
# Redis:      127.0.0.1:63799, AOF in .dev/redis; pidfile .dev/redis/redis.pid.
# Logs:       .dev/logs/postgres.log, .dev/logs/redis.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEV=$ROOT/.dev
LOG_DIR=$DEV/logs
ENV_FILE=$DEV/services.env

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_PORT=54329
PG_HOME=$DEV/pg
PG_DATA=$PG_HOME/data
PG_RUN=$DEV/run
PG_LOG=$LOG_DIR/postgres.log
PG_ADMIN_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"

REDIS_PORT=63799
REDIS_DIR=$DEV/redis
REDIS_PID=$REDIS_DIR/redis.pid
REDIS_LOG=$LOG_DIR/redis.log
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

is_root() { [[ $EUID -eq 0 ]]; }
say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

# PostgreSQL refuses to run as root, so as root its tools run as the postgres user.
as_pg() {
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_owner PORT: a short description of the listener, when ss can tell.
port_owner() {
  command -v ss >/dev/null 2>&1 || return 0
  ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/\1/p' | head -n1
}

port_taken() {
  local port=$1 what=$2 owner
  owner=$(port_owner "$port")
  die "port $port is in use by another process${owner:+ ($owner)}, so $what cannot start there. Stop that process and try again."
}

# --- installing what is missing -------------------------------------------------------------

apt_updated=
apt_install() {
  if ! is_root || ! command -v apt-get >/dev/null 2>&1; then
    die "missing: $*. Install it with your package manager, e.g. 'sudo apt-get install -y $*' on Debian/Ubuntu, then run this again."
  fi
  if [[ -z $apt_updated ]]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
    apt_updated=1
  fi
  say "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null
}

need_pg() {
  [[ -x $PG_BIN/postgres && -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || apt_install postgresql-15
  [[ -x $PG_BIN/postgres ]] || die "PostgreSQL 15 is still missing at $PG_BIN after installing postgresql-15."
  if is_root; then
    id postgres >/dev/null 2>&1 || die "the 'postgres' system user is missing (it comes with the postgresql-15 package)."
  fi
}

need_redis() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || apt_install redis-server
  command -v redis-server >/dev/null 2>&1 || die "redis-server is still missing after installing redis-server."
}

# --- PostgreSQL -----------------------------------------------------------------------------

# As root, the postgres user must be able to reach .dev/. When a parent directory of the
# repository is closed to other users (a clone under /root, say), keep the cluster in
# /var/tmp instead, one per repository path, and leave a pointer in .dev/pg.
pick_pg_dirs() {
  is_root || return 0
  mkdir -p "$DEV"
  if ! (cd / && runuser -u postgres -- test -x "$DEV"); then
    local alt
    alt=/var/tmp/tollgate-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
    PG_HOME=$alt
    PG_DATA=$alt/data
    PG_RUN=$alt/run
    PG_LOG=$alt/postgres.log
  fi
}

pg_running() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 1
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_start() {
  need_pg
  pick_pg_dirs
  if pg_running; then
    say "postgres already running on 127.0.0.1:$PG_PORT (data $PG_DATA)"
    return 0
  fi
  port_open "$PG_PORT" && port_taken "$PG_PORT" "PostgreSQL"

  mkdir -p "$PG_HOME" "$PG_RUN" "$LOG_DIR"
  touch "$PG_LOG"
  if [[ $PG_HOME != "$DEV/pg" ]]; then
    say "note: the postgres user cannot enter $DEV; using $PG_HOME instead"
    echo "$PG_HOME" >"$DEV/pg.location"
  fi
  if is_root; then
    chown postgres: "$PG_HOME" "$PG_RUN" "$PG_LOG"
    [[ -d $PG_DATA ]] && chown -R postgres: "$PG_DATA"
  fi

  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    say "initdb $PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" --auth=trust -U postgres -E UTF8 --no-locale \
      >>"$PG_LOG" 2>&1 || die "initdb failed; see $PG_LOG"
  fi

  say "starting postgres on 127.0.0.1:$PG_PORT"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
    -o "-p $PG_PORT -k $PG_RUN -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
    start >/dev/null 9>&- || die "postgres did not start; see $PG_LOG"
}

pg_stop() {
  pick_pg_dirs
  if pg_running; then
    say "stopping postgres"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
  else
    say "postgres is not running"
  fi
}

pg_status() {
  pick_pg_dirs
  if pg_running; then
    say "postgres running on 127.0.0.1:$PG_PORT (pid $(head -n1 "$PG_DATA/postmaster.pid"), data $PG_DATA)"
  else
    say "postgres stopped"
    return 1
  fi
}

# --- Redis ----------------------------------------------------------------------------------

# redis_pid prints the PID from our pidfile if that process is a live redis-server.
redis_pid() {
  local pid
  [[ -f $REDIS_PID ]] || return 1
  pid=$(tr -dc '0-9' <"$REDIS_PID")
  [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "redis-server.*:$REDIS_PORT" || return 1
  echo "$pid"
}

redis_start() {
  need_redis
  if redis_pid >/dev/null; then
    say "redis already running on 127.0.0.1:$REDIS_PORT (pid $(redis_pid))"
    return 0
  fi
  port_open "$REDIS_PORT" && port_taken "$REDIS_PORT" "Redis"

  mkdir -p "$REDIS_DIR" "$LOG_DIR"
  rm -f "$REDIS_PID"
  say "starting redis on 127.0.0.1:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" \
    --appendonly yes --appendfsync everysec --save '' >/dev/null 9>&- ||
    die "redis did not start; see $REDIS_LOG"
  local i
  for i in $(seq 1 100); do
    [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.1
  done
  die "redis did not answer on 127.0.0.1:$REDIS_PORT within 10 s; see $REDIS_LOG"
}

redis_stop() {
  local pid i
  if ! pid=$(redis_pid); then
    say "redis is not running"
    return 0
  fi
  say "stopping redis (pid $pid)"
  kill -TERM "$pid"
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$REDIS_PID"; return 0; }
    sleep 0.1
  done
  die "redis (pid $pid) did not stop within 10 s"
}

redis_status() {
  local pid
  if pid=$(redis_pid); then
    say "redis running on 127.0.0.1:$REDIS_PORT (pid $pid, dir $REDIS_DIR)"
  else
    say "redis stopped"
    return 1
  fi
}

write_env() {
  cat >"$ENV_FILE" <<EOF
# Written by .ci/services.sh start. Local services for development and tests.
PG_ADMIN_URL=$PG_ADMIN_URL
REDIS_URL=$REDIS_URL
EOF
}

# --- main -----------------------------------------------------------------------------------

usage() { die "usage: $0 start|stop [pg|redis]... | status | running pg|redis"; }

cmd=${1:-}
[[ $# -gt 0 ]] && shift
which=("$@")
[[ ${#which[@]} -gt 0 ]] || which=(pg redis)
for s in "${which[@]}"; do
  [[ $s == pg || $s == redis ]] || usage
done

mkdir -p "$DEV"
# One start/stop at a time per repository. The daemons are started with fd 9 closed so
# they do not inherit (and hold) the lock.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$DEV/services.lock"
  flock 9
fi

case $cmd in
start)
  for s in "${which[@]}"; do "${s}_start"; done
  write_env
  ;;
stop)
  # Redis first: nothing else depends on it being last.
  for s in redis pg; do
    if [[ " ${which[*]} " == *" $s "* ]]; then "${s}_stop"; fi
  done
  ;;
status)
  rc=0
  pg_status || rc=1
  redis_status || rc=1
  exit $rc
  ;;
running)
  [[ $# -eq 1 ]] || usage
  case $1 in
  pg) pick_pg_dirs; pg_running ;;
  redis) redis_pid >/dev/null ;;
  esac
  ;;
*) usage ;;
esac

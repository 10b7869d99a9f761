#!/usr/bin/env bash
# make dev: everything a newcomer needs, in one command.
#
#  1. checks that the dev ports are free;
#  2. starts PostgreSQL and Redis under .dev/ (.ci/services.sh) and creates database tollgate;
#  3. keeps a dev SECRET_KEY and admin password in .dev/ (generated once);
#  4. builds the binaries (make build) and writes .dev/dev.env;
#  5. runs `web migrate` and `web seed` (which writes .dev/demo.env);
#  6. runs every process of Procfile.dev with goreman and, once web and proxy answer, prints
#     the URLs, the admin login and a curl line to try.
#
# Ctrl-C stops the processes, then the PostgreSQL and Redis that this run started (services
# that were already running are left alone). Running it again reuses everything in .dev/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
FAKELLM_ADDR=127.0.0.1:8090

say() { printf 'dev: %s\n' "$*"; }
die() { printf 'dev: %s\n' "$*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# rand_hex N prints N random bytes as hex.
rand_hex() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex "$1"
  elif command -v xxd >/dev/null 2>&1; then
    head -c "$1" /dev/urandom | xxd -p -c 256
  else
    od -An -tx1 -N "$1" /dev/urandom | tr -d ' \n'
    echo
  fi
}

# keep_secret FILE BYTES: FILE holds a random hex value, generated on first use.
keep_secret() {
  [[ -s $1 ]] || (umask 077 && rand_hex "$2" >"$1")
  tr -d '[:space:]' <"$1"
}

# demo_get KEY reads KEY from .dev/demo.env (written by `web seed`).
demo_get() { sed -n "s/^$1=//p" .dev/demo.env | tail -n1 | sed 's/^["'\'']//; s/["'\'']$//'; }

# --- 1. ports -------------------------------------------------------------------------------
for p in web:8080 proxy:8081 worker:8082 fakellm:8090; do
  if port_open "${p#*:}"; then
    owner=$(ss -ltnpH "sport = :${p#*:}" 2>/dev/null | sed -n 's/.*users:((\("[^"]*",pid=[0-9]*\).*/ by \1/p' | head -n1 || true)
    die "port ${p#*:} (${p%%:*}) is already in use${owner}. Stop that process (another make dev?) and try again."
  fi
done

# --- 2. services ----------------------------------------------------------------------------
started=()
.ci/services.sh running pg || started+=(pg)
.ci/services.sh running redis || started+=(redis)
waiter=
cleanup() {
  trap '' INT TERM
  if [[ -n $waiter ]]; then kill "$waiter" 2>/dev/null || true; fi
  if [[ ${#started[@]} -gt 0 ]]; then
    say "stopping the services this run started: ${started[*]}"
    .ci/services.sh stop "${started[@]}" || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

.ci/services.sh start
pg_url=$(. .dev/services.env && echo "$PG_ADMIN_URL")
redis_url=$(. .dev/services.env && echo "$REDIS_URL")
if [[ -z $("$PG_BIN/psql" "$pg_url" -tAc "select 1 from pg_database where datname = 'tollgate'") ]]; then
  say "creating database tollgate"
  "$PG_BIN/psql" "$pg_url" -qc 'create database tollgate'
fi

# --- 3. secrets -----------------------------------------------------------------------------
secret_key=$(keep_secret .dev/secret_key 32)
[[ $secret_key =~ ^[0-9a-f]{64}$ ]] || die ".dev/secret_key is not 64 hex characters; delete it to get a new one."
admin_password=$(keep_secret .dev/admin_password 12)

# --- 4. build and environment ---------------------------------------------------------------
"${MAKE:-make}" --no-print-directory build

(umask 077 && cat >.dev/dev.env) <<EOF
# Written by make dev (.ci/dev.sh) on every run. Overrides go in .env (loaded after this).
ENV=development
LOG_LEVEL=info
LOG_FORMAT=text
DATABASE_URL=postgres://postgres@127.0.0.1:54329/tollgate?sslmode=disable
REDIS_URL=$redis_url
REDIS_PREFIX=tg:
SECRET_KEY=$secret_key
WEB_ADDR=127.0.0.1:8080
PROXY_ADDR=127.0.0.1:8081
PROXY_SPOOL_DIR=$PWD/.dev/spool
WORKER_HEALTH_ADDR=127.0.0.1:8082
FAKELLM_ADDR=$FAKELLM_ADDR
BASE_URL=http://127.0.0.1:8080
PROXY_PUBLIC_URL=http://127.0.0.1:8081
REGISTRATION=open
ADMIN_EMAIL=admin@tollgate.local
ADMIN_PASSWORD=$admin_password
UPSTREAM_ALLOW_PRIVATE=true
EOF
set -a
. .dev/dev.env
if [[ -f .env ]]; then
  say "loading overrides from .env"
  . ./.env
fi
set +a

# --- 5. database ----------------------------------------------------------------------------
say "web migrate"
.dev/bin/web migrate
say "web seed"
.dev/bin/web seed -demo-env .dev/demo.env -fakellm-url "http://$FAKELLM_ADDR"
[[ -f .dev/demo.env ]] || die "web seed did not write .dev/demo.env"

# --- 6. run ---------------------------------------------------------------------------------
banner() {
  local web proxy key
  web=$(demo_get WEB_URL)
  proxy=$(demo_get PROXY_URL)
  key=$(demo_get DEMO_API_KEY)
  cat <<EOF

================================================================================
  Tollgate is running. Ctrl-C stops everything.

  Web app:   ${web:-$BASE_URL}
  Admin:     $(demo_get ADMIN_EMAIL) / $(demo_get ADMIN_PASSWORD)
  Proxy:     ${proxy:-$PROXY_PUBLIC_URL}
  Fake LLM:  http://$FAKELLM_ADDR
  Demo key:  $key
  (all of this is in .dev/demo.env; the processes' environment is .dev/dev.env)

  Try a streaming request through the proxy to the fake upstream:

curl -N ${proxy:-$PROXY_PUBLIC_URL}/v1/messages -H "x-api-key: $key" -H "anthropic-version: 2023-06-01" -H "content-type: application/json" -d '{"model":"claude-sonnet-4-5","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Hello, Tollgate!"}]}'
================================================================================

EOF
}

# Print the banner once web and proxy accept connections, below their startup logs.
(
  for _ in $(seq 1 120); do
    if port_open 8080 && port_open 8081; then
      banner
      exit 0
    fi
    sleep 0.5
  done
  say "web or proxy is not listening after 60 s; see the logs above."
  banner
) &
waiter=$!

say "starting the processes of Procfile.dev (go tool goreman -f Procfile.dev start)"
go tool goreman -set-ports=false -f Procfile.dev start

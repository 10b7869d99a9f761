#!/usr/bin/env bash
# Runs every Go test against a real PostgreSQL and Redis. Uses TEST_DATABASE_URL and
# TEST_REDIS_URL when both are set; otherwise starts the local services (.ci/services.sh)
# and takes what is missing from .dev/services.env. The services are left running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z ${TEST_DATABASE_URL:-} || -z ${TEST_REDIS_URL:-} ]]; then
  .ci/services.sh start
  # Read the file in a subshell so its REDIS_URL does not leak into the tests' environment.
  pg_url=$(. .dev/services.env && echo "$PG_ADMIN_URL")
  redis_url=$(. .dev/services.env && echo "$REDIS_URL")
  export TEST_DATABASE_URL=${TEST_DATABASE_URL:-$pg_url}
  export TEST_REDIS_URL=${TEST_REDIS_URL:-$redis_url}
fi
echo "test: TEST_DATABASE_URL=$TEST_DATABASE_URL"
echo "test: TEST_REDIS_URL=$TEST_REDIS_URL"

mkdir -p .dev/logs .dev/bin
go build -o .dev/bin/testsum .ci/testsum.go
echo "test: go test -count=1 -timeout 15m ./...  (raw output: .dev/logs/go-test.json)"
set +e
go test -count=1 -timeout 15m -json ./... 2>&1 | tee .dev/logs/go-test.json | .dev/bin/testsum
status=("${PIPESTATUS[@]}")
set -e
if [[ ${status[0]} -ne 0 || ${status[2]} -ne 0 ]]; then
  exit 1
fi

# Fuzz every parser of untrusted input for a short budget (FUZZTIME, default 8s each);
# the corpora under testdata/fuzz keep what earlier runs found.
fuzztime=${FUZZTIME:-8s}
for target in "FuzzSniff ./internal/relay" "FuzzAnthropicTap ./internal/relay" "FuzzOtherTaps ./internal/relay" "FuzzParseRequest ./internal/fakellm"; do
  set -- $target
  echo "test: fuzz $1 ($2) for $fuzztime"
  if ! go test -run '^$' -fuzz "^$1\$" -fuzztime "$fuzztime" "$2" >.dev/logs/fuzz-$1.log 2>&1; then
    cat .dev/logs/fuzz-$1.log
    echo "test: fuzz $1 FAILED (the failing input is saved under $2/testdata/fuzz/$1)"
    exit 1
  fi
done
echo "test: fuzzing passed"

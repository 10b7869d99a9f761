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
# With the race detector: the proxy, the gate and the usage pipeline are concurrent code,
# and the e2e tests run a whole proxy in-process under load (the processes they start are
# built without it). It costs the run a few seconds here, as the tests mostly wait on I/O.
echo "test: go test -race -count=1 -timeout 15m ./...  (raw output: .dev/logs/go-test.json)"
set +e
go test -race -count=1 -timeout 15m -json ./... 2>&1 | tee .dev/logs/go-test.json | .dev/bin/testsum
status=("${PIPESTATUS[@]}")
set -e
if [[ ${status[0]} -ne 0 || ${status[2]} -ne 0 ]]; then
  exit 1
fi

# Fuzz every parser of untrusted input for a short budget (FUZZTIME, default 150000
# executions each: a count, not a duration, because Go 1.26's fuzz coordinator can report
# a spurious "context deadline exceeded" when a duration ends under CPU contention —
# golang/go#75804, fixed in Go 1.27). A real finding always writes a reproducer under
# testdata/fuzz; a failure without one is retried once before it counts.
fuzztime=${FUZZTIME:-150000x}
for target in "FuzzSniff ./internal/relay" "FuzzAnthropicTap ./internal/relay" "FuzzOtherTaps ./internal/relay" "FuzzMemberValue ./internal/relay" "FuzzUsageScan ./internal/relay" "FuzzValidJSON ./internal/relay" "FuzzDecodeEvent ./internal/usage" "FuzzParseRequest ./internal/fakellm"; do
  set -- $target
  echo "test: fuzz $1 ($2) for $fuzztime"
  ok=
  for try in 1 2; do
    if go test -run '^$' -fuzz "^$1\$" -fuzztime "$fuzztime" "$2" >.dev/logs/fuzz-$1.log 2>&1; then
      ok=1
      break
    fi
    if grep -q "Failing input written to" .dev/logs/fuzz-$1.log; then
      break
    fi
    echo "test: fuzz $1 failed without a reproducer (coordinator flake?); retrying once"
  done
  if [[ -z $ok ]]; then
    cat .dev/logs/fuzz-$1.log
    echo "test: fuzz $1 FAILED (a failing input is saved under $2/testdata/fuzz/$1)"
    exit 1
  fi
done
echo "test: fuzzing passed"

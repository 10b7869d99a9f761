#!/usr/bin/env bash
# Regenerates all generated code with the pinned tools in .dev/bin (see .ci/tools.sh):
# templ components (*_templ.go next to each .templ file) and sqlc queries (internal/db/sqlc).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=.dev/bin
echo "generate: templ generate"
"$BIN/templ" generate -log-level warn
if [[ -f sqlc.yaml || -f sqlc.yml || -f sqlc.json ]]; then
  echo "generate: sqlc generate"
  "$BIN/sqlc" generate
else
  echo "generate: no sqlc.yaml, skipping sqlc"
fi

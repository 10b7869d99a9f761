#!/usr/bin/env bash
# gofmt (fails if any file would change) and go vet. Generated files are included: templ
# and sqlc both emit gofmt-formatted code, so a listed file was edited by hand.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

unformatted=$(find . \( -type d \( -name vendor -o -name node_modules -o -name '.?*' \) -prune \) \
  -o -type f -name '*.go' -exec gofmt -l {} + | sed 's:^\./::')
if [[ -n $unformatted ]]; then
  echo "lint: gofmt would change these files (run gofmt -w on them):"
  echo "$unformatted" | sed 's/^/  /'
  exit 1
fi
echo "lint: gofmt ok"
go vet ./...
echo "lint: go vet ok"

#!/usr/bin/env bash
# Installs the pinned code generators into .dev/bin when they are missing or at another
# version: templ (views/*.templ → *_templ.go) and sqlc (sql/ → internal/db/sqlc).
# A matching binary already in $(go env GOPATH)/bin is copied instead of rebuilt.
set -euo pipefail

TEMPL_VERSION=${TEMPL_VERSION:-v0.3.977}
SQLC_VERSION=${SQLC_VERSION:-v1.31.1}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.dev/bin
mkdir -p "$BIN"

# version_of BIN: what `BIN version` prints (both tools print just "vX.Y.Z").
version_of() { [[ -x $1 ]] && "$1" version 2>/dev/null | head -n1 | tr -d '[:space:]'; }

# ensure NAME VERSION PACKAGE [ENV=VALUE...]
ensure() {
  local name=$1 version=$2 pkg=$3
  shift 3
  local have gopath_bin
  have=$(version_of "$BIN/$name" || true)
  if [[ $have == "$version" ]]; then
    return 0
  fi
  gopath_bin=$(go env GOPATH)/bin/$name
  if [[ $(version_of "$gopath_bin" || true) == "$version" ]]; then
    echo "tools: copying $name $version from $gopath_bin"
    cp "$gopath_bin" "$BIN/$name.tmp" && mv "$BIN/$name.tmp" "$BIN/$name"
    return 0
  fi
  echo "tools: installing $name $version${have:+ (found $have)}"
  env GOBIN="$BIN" "$@" go install "$pkg@$version"
  have=$(version_of "$BIN/$name" || true)
  [[ $have == "$version" ]] || { echo "tools: $name reports '$have', want $version" >&2; exit 1; }
}

ensure templ "$TEMPL_VERSION" github.com/a-h/templ/cmd/templ

# sqlc links libpg_query through cgo, so it needs a C compiler (≈2 min to build).
if [[ $(version_of "$BIN/sqlc" || true) != "$SQLC_VERSION" ]] && ! command -v gcc >/dev/null 2>&1 &&
  [[ $(version_of "$(go env GOPATH)/bin/sqlc" || true) != "$SQLC_VERSION" ]]; then
  echo "tools: building sqlc needs a C compiler; install one (Debian: apt-get install -y gcc libc6-dev)" >&2
  exit 1
fi
ensure sqlc "$SQLC_VERSION" github.com/sqlc-dev/sqlc/cmd/sqlc CGO_ENABLED=1

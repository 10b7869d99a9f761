#!/usr/bin/env bash
# Fails when the committed generated code is stale: hashes every generated file, runs
# .ci/generate.sh, and compares. Works on a clean clone and in a dirty working tree alike,
# because it compares file contents before and after, not against git. Afterwards the tree
# holds the freshly generated code, so on failure it only needs committing.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Output directories of sqlc: internal/db/sqlc plus every `out:` in sqlc.yaml.
sqlc_dirs() {
  {
    echo internal/db/sqlc
    [[ -f sqlc.yaml ]] && sed -n 's/^[[:space:]]*out:[[:space:]]*["'\'']\{0,1\}\([^"'\'' #]*\).*/\1/p' sqlc.yaml
  } | sed 's:/*$::' | sort -u
}

# generated_files lists every generated file, one path a line, sorted. templ's walk skips
# directories named vendor or node_modules or starting with "." or "_"; so does this one.
generated_files() {
  {
    find . \( -type d \( -name vendor -o -name node_modules -o -name '.?*' -o -name '_*' \) -prune \) \
      -o -type f -name '*_templ.go' -print
    local d
    for d in $(sqlc_dirs); do
      [[ -d $d ]] && find "$d" -type f -print
    done
  } | sed 's:^\./::' | sort -u
}

manifest() { generated_files | while IFS= read -r f; do sha256sum "$f"; done; }

manifest >"$tmp/before"
touch "$tmp/marker"
sleep 0.05 # so that every file sqlc (re)writes is strictly newer than the marker
.ci/generate.sh >"$tmp/generate.log" 2>&1 || { cat "$tmp/generate.log"; exit 1; }
manifest >"$tmp/after"

# sqlc rewrites every file it generates but never deletes one: a file in its output
# directories that it did not write this time belongs to a query file that is gone.
orphans=$(for d in $(sqlc_dirs); do
  [[ -d $d ]] && find "$d" -type f -name '*.go' ! -newer "$tmp/marker" -print
done | sed 's:^\./::' | sort -u)

changes=$(
  join -a1 -a2 -e - -o 0,1.1,2.1 -1 2 -2 2 \
    <(sort -k2 "$tmp/before") <(sort -k2 "$tmp/after") |
    awk '$2 == "-" { print "  new:      " $1; next }
         $3 == "-" { print "  removed:  " $1; next }
         $2 != $3  { print "  changed:  " $1 }'
  for f in $orphans; do echo "  orphaned: $f (no longer generated: delete it)"; done
)

n=$(wc -l <"$tmp/after")
if [[ -n $changes ]]; then
  echo "generate-check: generated code is stale:"
  echo "$changes"
  echo "generate-check: run make generate and commit the result."
  exit 1
fi
echo "generate-check: $n generated files are up to date."

#!/usr/bin/env bash
# Installs the real client CLIs the end-to-end tests drive (Claude Code, Codex) from npm
# into .dev/clients, at pinned versions, when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLAUDE_CODE_VERSION=2.1.197
CODEX_VERSION=0.169.0
dir=.dev/clients

installed() { # name version
  local pj="$dir/node_modules/$1/package.json"
  [[ -f $pj ]] && grep -q "\"version\": \"$2\"" "$pj"
}

if installed @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION" && installed @openai/codex "$CODEX_VERSION"; then
  echo "clients: claude-code $CLAUDE_CODE_VERSION and codex $CODEX_VERSION present"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "clients: npm is needed to install the claude and codex CLIs (apt-get install -y nodejs npm)"; exit 1; }
mkdir -p "$dir"
echo "clients: npm install @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION @openai/codex@$CODEX_VERSION"
for try in 1 2 3; do
  if npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
      "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION" </dev/null; then
    exit 0
  fi
  echo "clients: npm install failed (try $try); retrying"
  sleep $((try * 5))
done
exit 1

#!/usr/bin/env bash
# Installs the packages of the test OpenID provider (tests/oidc) from its lock file.
# Does nothing when they are already installed from the current package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/../tests/oidc"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "oidc-setup: $tool is missing; the OpenID tests need Node.js 20.12 or later with npm" >&2
    exit 1
  fi
done
# oidc-provider 9 uses crypto.hash (Node 20.12+).
if ! node -e 'process.exit(typeof require("node:crypto").hash === "function" ? 0 : 1)'; then
  echo "oidc-setup: node $(node --version) is too old; the OpenID tests need Node.js 20.12 or later" >&2
  exit 1
fi

# npm ci writes node_modules/.package-lock.json; older than the lock file means stale.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

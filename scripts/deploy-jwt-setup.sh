#!/usr/bin/env bash
# Installs the packages of the JWT-validating Deploy stand-in (tests/deploy-jwt) from its
# lock file. Does nothing when they are already installed from the current package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/../tests/deploy-jwt"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "deploy-jwt-setup: $tool is missing; the JWT tests need Node.js 20 or later with npm" >&2
    exit 1
  fi
done
# jose 6 needs the global WebCrypto and fetch of Node 20.
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "deploy-jwt-setup: node $(node --version) is too old; the JWT tests need Node.js 20 or later" >&2
  exit 1
fi

# npm ci writes node_modules/.package-lock.json; older than the lock file means stale.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

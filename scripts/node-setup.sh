#!/usr/bin/env bash
# Installs the packages of the Node test components from their lock files: the OpenID
# provider (tests/oidc) and the JWT-validating Deploy stand-in (tests/deploy-jwt).
# Does nothing for a component already installed from its current package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/../tests"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "node-setup: $tool is missing; the SSO and JWT tests need Node.js 20.12 or later with npm" >&2
    exit 1
  fi
done
# oidc-provider 9 uses crypto.hash (Node 20.12+); jose 6 the WebCrypto of Node 20.
if ! node -e 'process.exit(typeof require("node:crypto").hash === "function" ? 0 : 1)'; then
  echo "node-setup: node $(node --version) is too old; the SSO and JWT tests need Node.js 20.12 or later" >&2
  exit 1
fi

for component in oidc deploy-jwt; do
  # npm ci writes node_modules/.package-lock.json; older than the lock file means stale.
  if [ ! -f "$component/node_modules/.package-lock.json" ] ||
     [ "$component/package-lock.json" -nt "$component/node_modules/.package-lock.json" ]; then
    (cd "$component" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done

#!/usr/bin/env bash
# Makes sure nginx with the auth_request module is installed, for the forward-auth
# tests (tests/forward_auth.rs run it as a child process with a generated config).
# Installs Debian's nginx-light with apt-get when it is missing and we are root.
set -euo pipefail

has_auth_request() {
  command -v nginx >/dev/null && nginx -V 2>&1 | grep -q -- --with-http_auth_request_module
}
if has_auth_request; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
  # The package starts a system nginx on port 80; the tests run their own.
  if command -v service >/dev/null; then service nginx stop >/dev/null 2>&1 || true; fi
fi
if ! has_auth_request; then
  echo "nginx-setup: nginx with the auth_request module is needed by the forward-auth tests; install nginx (Debian: nginx-light)" >&2
  exit 1
fi

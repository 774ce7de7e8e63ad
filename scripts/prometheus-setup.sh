#!/usr/bin/env bash
# The metrics tests check the gateway's /patgate/metrics and deploy/prometheus-rules.yaml
# with promtool, from Debian's prometheus package (the server itself is not started).
set -euo pipefail
if command -v promtool >/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # Installing the package may start the server; the tests need only promtool.
  (systemctl stop prometheus || service prometheus stop || pkill -x prometheus) >/dev/null 2>&1 || true
else
  echo "promtool is needed by the metrics tests: install Debian's prometheus package" >&2
  exit 1
fi

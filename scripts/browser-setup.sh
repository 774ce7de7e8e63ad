#!/usr/bin/env bash
# Installs headless Chromium and ChromeDriver (Debian's chromium, chromium-driver) for
# the browser tests (tests/ui.rs). Does nothing when both are already installed.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
else
  echo "browser-setup: the browser tests need chromium and chromedriver on PATH;" \
       "install them (Debian: apt-get install chromium chromium-driver)" >&2
  exit 1
fi

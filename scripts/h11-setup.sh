#!/usr/bin/env bash
# Installs the independent HTTP/1 parser the differential test compares the gateway with
# (h11 from PyPI) into tests/http1/.venv. Does nothing when the environment is already
# installed from the current requirements.
set -euo pipefail
cd "$(dirname "$0")/../tests/http1"

if ! command -v python3 >/dev/null; then
  echo "h11-setup: python3 is missing; the differential parsing test needs Python 3.9 or later with venv" >&2
  exit 1
fi
# pip writes nothing we can compare, so a copy of the requirements marks what is installed.
if [ -x .venv/bin/python ] && cmp -s requirements.txt .venv/installed.txt; then
  exit 0
fi
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
cp requirements.txt .venv/installed.txt

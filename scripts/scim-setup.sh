#!/usr/bin/env bash
# Installs the SCIM compliance checker (scim2-cli from PyPI, which brings scim2-tester,
# scim2-client and scim2-models; versions pinned in tests/scim/requirements.txt) into
# tests/scim/.venv. Does nothing when it is installed from the current requirements.
set -euo pipefail
cd "$(dirname "$0")/../tests/scim"

if ! command -v python3 >/dev/null; then
  echo "scim-setup: python3 is missing; the SCIM tests need Python 3.10 or later with venv" >&2
  exit 1
fi
# pip writes nothing we can compare, so a copy of the requirements marks what is installed.
if [ -x .venv/bin/scim2 ] && cmp -s requirements.txt .venv/installed.txt; then
  exit 0
fi
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
cp requirements.txt .venv/installed.txt

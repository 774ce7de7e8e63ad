#!/usr/bin/env bash
# Installs the API contract checkers (openapi-spec-validator and schemathesis from PyPI,
# versions pinned in tests/openapi/requirements.txt) into tests/openapi/.venv. Does
# nothing when they are installed from the current requirements.
set -euo pipefail
cd "$(dirname "$0")/../tests/openapi"

if ! command -v python3 >/dev/null; then
  echo "openapi-setup: python3 is missing; the contract test needs Python 3.10 or later with venv" >&2
  exit 1
fi
# pip writes nothing we can compare, so a copy of the requirements marks what is installed.
if [ -x .venv/bin/schemathesis ] && cmp -s requirements.txt .venv/installed.txt; then
  exit 0
fi
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
cp requirements.txt .venv/installed.txt

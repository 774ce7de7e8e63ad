#!/usr/bin/env bash
# Installs a test helper's Python packages (tests/DIR/requirements.txt, from PyPI) into
# tests/DIR/.venv. Does nothing when the environment is already installed from the
# current requirements. Usage: venv-setup.sh DIR "what needs it"
set -euo pipefail
dir="$1"
needed_by="$2"
cd "$(dirname "$0")/../tests/$dir"

if ! command -v python3 >/dev/null; then
  echo "$dir: python3 is missing; $needed_by need Python 3.9 or later with venv" >&2
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

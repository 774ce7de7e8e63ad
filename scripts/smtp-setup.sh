#!/usr/bin/env bash
# Installs the test SMTP server (tests/smtp, aiosmtpd from PyPI) into tests/smtp/.venv.
# Does nothing when the environment is already installed from the current requirements.
set -euo pipefail
cd "$(dirname "$0")/../tests/smtp"

if ! command -v python3 >/dev/null; then
  echo "smtp-setup: python3 is missing; the e-mail tests need Python 3.9 or later with venv" >&2
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

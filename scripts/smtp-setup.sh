#!/usr/bin/env bash
# Installs the test SMTP server (tests/smtp, aiosmtpd from PyPI) into tests/smtp/.venv.
set -euo pipefail
exec bash "$(dirname "$0")/venv-setup.sh" smtp "the e-mail tests"

#!/usr/bin/env bash
# Installs the independent HTTP/1 parser the differential parsing test compares the
# gateway with (h11 from PyPI, pinned in tests/http1/requirements.txt) into
# tests/http1/.venv.
set -euo pipefail
exec bash "$(dirname "$0")/venv-setup.sh" http1 "the differential parsing tests"

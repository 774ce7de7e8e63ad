#!/usr/bin/env bash
# Runs every test of patgate.
#
# The PostgreSQL cases run when PATGATE_TEST_POSTGRES_URL names a server where the
# user may create databases (each test gets its own), for example
#   PATGATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test bash scripts/test.sh
# Without it they are skipped with a note, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${PATGATE_TEST_POSTGRES_URL:-}" ]; then
  echo "note: PATGATE_TEST_POSTGRES_URL is not set; PostgreSQL cases will be skipped" >&2
fi

cargo test --locked "$@"

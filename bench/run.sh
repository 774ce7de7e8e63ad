#!/usr/bin/env bash
# Reruns the benchmarks: installs what they need (nginx, wrk, curl), builds the release
# binaries, runs everything on loopback and prints Markdown tables (also written to
# bench/results/latest.md and latest.json).
#
#   bash bench/run.sh                      # every scenario
#   bash bench/run.sh hot flood --rounds 5 # some, with options (see bench/bench.py --help)
#
# PostgreSQL cases use PATGATE_TEST_POSTGRES_URL (default: the local server on
# 127.0.0.1:5432, user postgres, when it answers); databases patgate_bench_* are created there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
command -v psql >/dev/null || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ -z "${PATGATE_TEST_POSTGRES_URL:-}" ] && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  export PATGATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test
fi

cargo build --release --locked --bin patgate --example loadgen --example fill_tokens --example notify_due --example fill_sso_users --example inventory_bench
exec python3 bench/bench.py "$@"

#!/usr/bin/env bash
# Rolling restart with zero failed requests: installs HAProxy (run as a plain process
# with its own configuration, not the system service), socat (for its stats socket) and
# psql, builds the release binaries, and runs bench/rolling.py: two replicas on one
# PostgreSQL database behind HAProxy, restarted one after the other under load.
#
#   bash bench/rolling.sh                          # shutdown_delay 3s, 2000 req/s
#   bash bench/rolling.sh --shutdown-delay 0s      # the gateway without the drain
#   bash bench/rolling.sh --rounds 3 --retries 0   # see bench/rolling.py --help
#
# PostgreSQL: PATGATE_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test);
# the database patgate_rolling is created there and dropped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v socat >/dev/null || need+=(socat)
command -v psql >/dev/null || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --locked --bin patgate --example loadgen
exec python3 bench/rolling.py "$@"

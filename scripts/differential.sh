#!/usr/bin/env bash
# The long run of the differential parsing test (tests/differential.rs): many more
# generated requests than CI's 256, compared between the fast path, the general path
# and h11. Usage: bash scripts/differential.sh [CASES] (20000 by default). It ends with
# the tally (cases, requests forwarded, each explained difference met) and the time;
# docs/differential-parsing.md records the last run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/h11-setup.sh
PATGATE_DIFF_CASES="${1:-20000}" cargo test --locked --test differential \
  deploy_receives_each_request_as_h11_reads_it -- --nocapture

#!/usr/bin/env bash
# Measures the Access tokens page's first load, signed in, with 50 tokens, in headless
# Chromium: bytes transferred and time until rendered (tests/ui.rs,
# measure_first_load_with_50_tokens). Prints a Markdown table for BENCHMARKS.md.
#
#   bash bench/ui.sh                # 15 first loads
#   UI_BENCH_ROUNDS=30 bash bench/ui.sh --release
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/browser-setup.sh
cargo test --locked "$@" --test ui measure_first_load_with_50_tokens \
  -- --ignored --nocapture --test-threads=1 2>/dev/null | grep -E '^\||^\('

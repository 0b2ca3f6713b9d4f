#!/usr/bin/env bash
# Offline schema check of the install bundle with kubernetes-validate (strict mode:
# unknown fields fail). Installs the checker from PyPI when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install -q --root-user-action=ignore kubernetes-validate >/dev/null 2>&1 \
    || { echo "check-manifests: cannot install kubernetes-validate from PyPI" >&2; exit 1; }
fi
kubernetes-validate --strict --quiet deploy/pxguard.yaml
echo "check-manifests: deploy/pxguard.yaml passes kubernetes-validate --strict"

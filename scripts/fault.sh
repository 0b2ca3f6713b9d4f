#!/usr/bin/env bash
# Load-and-fault test against the real binary (see scripts/fault.py). FAULT_SECONDS
# sets how long the storm lasts (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
swift build 2>&1 | grep -E 'error' || true
python3 scripts/fault.py .build/debug/pxguard "${FAULT_SECONDS:-15}"

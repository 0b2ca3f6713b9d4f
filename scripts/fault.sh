#!/usr/bin/env bash
# Load-and-fault test against the real binary (see scripts/fault.py). FAULT_SECONDS
# sets how long the storm lasts (default 15); the memory phase after it holds
# about 8,000 connections for a few seconds, so the descriptor limit is raised.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 20000 ] || { echo "fault: need 20000 descriptors, have $(ulimit -n)" >&2; exit 1; }
swift build 2>&1 | grep -E 'error' || true
python3 scripts/fault.py .build/debug/pxguard "${FAULT_SECONDS:-15}"

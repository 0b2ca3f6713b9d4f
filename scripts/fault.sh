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
# The slow-body attack (issue 27): one address holding request heads with 1 byte of a 4 KiB
# body at ~200 handshakes/s while other addresses' reviews must be answered (>= 99%).
# CI runs 1,500 connections; ATTACK_FULL=1 runs the issue's 8,192. Then again with the rate
# check off and a small budget, so that only fair shedding keeps the others served.
attack=$([ "${ATTACK_FULL:-0}" = 1 ] && echo 8192 || echo 1500)
python3 scripts/slow-body.py .build/debug/pxguard "$attack" 200
python3 scripts/slow-body.py .build/debug/pxguard 1500 200 $'  minRequestBytesPerSecond: 0\n  maxConnections: 512\n'

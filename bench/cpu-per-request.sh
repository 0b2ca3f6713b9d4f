#!/usr/bin/env bash
# CPU time the server process spends per answered request under the same wrk load:
# less sensitive to a noisy machine than req/s, because it does not depend on how
# much CPU the load generator and neighbours leave over.
# Usage: cpu-per-request.sh PID URL BODY [SECONDS]   (loopback only)
set -euo pipefail
pid=$1 url=$2 body=$3 dur=${4:-5}
lua=$(mktemp /tmp/cpu-per-request.XXXXXX.lua)
trap 'rm -f "$lua"' EXIT
cat > "$lua" <<LUA
local f = io.open("$body", "rb"); local b = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = b; wrk.headers["Content-Type"] = "application/json"
LUA
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(ticks)
out=$(wrk -t1 -c"${CONNS:-32}" -d"${dur}s" -s "$lua" "$url")
after=$(ticks)
requests=$(awk '/requests in/ {print $1}' <<<"$out")
hz=$(getconf CLK_TCK)
python3 -c "import sys; t,r,hz=map(float,sys.argv[1:]); print(f'{r:.0f} requests, {t/hz:.2f} s CPU, {t/hz/r*1e6:.1f} us CPU per request')" "$((after - before))" "$requests" "$hz"

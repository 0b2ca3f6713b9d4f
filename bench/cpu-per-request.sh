#!/usr/bin/env bash
# CPU time the server process spends per answered request under the same wrk load:
# less sensitive to a noisy machine than req/s, because it does not depend on how
# much CPU the load generator and neighbours leave over.
# Usage: cpu-per-request.sh PID PROGRAM URL BODY [SECONDS]   (loopback only)
# PROGRAM is the basename the PID's command line must start with (nginx, pxguard): the
# ticks are read only from the process meant, never from whatever holds the number.
set -euo pipefail
pid=$1 program=$2 url=$3 body=$4 dur=${5:-5}
lua=$(mktemp /tmp/cpu-per-request.XXXXXX.lua)
trap 'rm -f "$lua"' EXIT
cat > "$lua" <<LUA
local f = io.open("$body", "rb"); local b = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = b; wrk.headers["Content-Type"] = "application/json"
LUA
ticks() {
  local argv0
  argv0=$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | head -1 || true)
  case "$(basename "${argv0%%:*}" 2>/dev/null)" in
    "$program") ;;
    *) echo "cpu-per-request: pid $pid runs '${argv0:-nothing}', not $program: not measuring it" >&2; exit 2 ;;
  esac
  # Fields after the command name's last ')' (a name may hold spaces): utime, stime.
  sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'
}
before=$(ticks)
out=$(wrk -t1 -c"${CONNS:-32}" -d"${dur}s" -s "$lua" "$url")
after=$(ticks)
requests=$(awk '/requests in/ {print $1}' <<<"$out")
hz=$(getconf CLK_TCK)
python3 -c "import sys; t,r,hz=map(float,sys.argv[1:]); print(f'{r:.0f} requests, {t/hz:.2f} s CPU, {t/hz/r*1e6:.1f} us CPU per request')" "$((after - before))" "$requests" "$hz"

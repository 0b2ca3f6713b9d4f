#!/usr/bin/env bash
# CPU time per answered request, nginx (fixed response, one worker) against pxguard
# (one event loop, full rule set), alternating rounds in one run. Throughput on a
# shared 2-core VM swings with whatever else runs; CPU per request barely does,
# so this is the steadier way to compare the two servers' cost.
# Usage: cpu-compare.sh PXGUARD_BINARY REVIEW_JSON   Env: DURATION (4), ROUNDS (3). Loopback only.
set -euo pipefail
bin=$1 body=$2 dur=${DURATION:-4} rounds=${ROUNDS:-3}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/pxguard-cpu.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
"$bin" certs --out "$work" >/dev/null
printf 'server: {workers: 1}\n' > "$work/one-loop.yaml"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off; client_body_buffer_size 8m; client_max_body_size 8m; keepalive_requests 10000000;
  server {
    listen 127.0.0.1:19453 ssl;
    ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key; ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type application/json;
      return 200 '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"x","allowed":true}}'; }
  }
}
CONF
nginx -c "$work/nginx.conf"; sleep 0.3; pids+=("$(cat "$work/nginx.pid")")
"$bin" serve --listen 127.0.0.1:19455 --cert-dir "$work" --config "$work/one-loop.yaml" 2>"$work/pxguard.log" & pids+=($!)
sleep 0.5
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
declare -A cost
for r in $(seq 1 "$rounds"); do
  for target in "nginx $nginx_worker 19453" "pxguard ${pids[1]} 19455"; do
    set -- $target
    line=$("$here/cpu-per-request.sh" "$2" "$1" "https://127.0.0.1:$3/validate" "$body" "$dur")
    printf '%-8s round %s: %s\n' "$1" "$r" "$line"
    cost[$1]="${cost[$1]:-} $(awk '{print $(NF-4)}' <<<"$line")"
  done
done
python3 - "${cost[nginx]}" "${cost[pxguard]}" <<'PY'
import statistics, sys
ng, px = (statistics.median(map(float, s.split())) for s in sys.argv[1:])
print(f"median CPU per request: nginx {ng:.1f} us, pxguard {px:.1f} us; nginx/pxguard {ng/px:.2f} (the throughput ratio one core would give)")
PY

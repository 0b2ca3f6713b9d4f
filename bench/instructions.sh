#!/usr/bin/env bash
# User-space instructions per answered request, nginx (fixed response) against pxguard
# (full rule set), each server under valgrind's callgrind with h2load sending the same
# 3.3 KB review over TLS keep-alive. Instruction counts do not depend on what else the
# machine runs, so this is the noise-free comparison of the two servers' own work
# (the kernel's part, the same for both, is not counted).
# Per request = (total after N2 requests - total after N1) / (N2 - N1): start-up,
# handshakes and shutdown cancel out. Loopback only.
# Usage: instructions.sh PXGUARD_BINARY REVIEW_JSON   Env: N1 (1000), N2 (3000).
set -euo pipefail
bin=$(realpath "$1") body=$(realpath "$2") n1=${N1:-1000} n2=${N2:-3000}
work=$(mktemp -d /tmp/pxguard-instr.XXXXXX)
trap 'rm -rf "$work"' EXIT
command -v h2load >/dev/null || apt-get install -y -qq nghttp2-client >/dev/null
"$bin" certs --out "$work" >/dev/null
printf 'server: {workers: 1}\n' > "$work/one-loop.yaml"

# Runs one server under callgrind for $3 requests; prints the instructions it executed.
measure() {
  local name=$1 port=$2 n=$3 pid
  if [ "$name" = nginx ]; then
    cat > "$work/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $work/nginx.pid; error_log $work/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; client_body_buffer_size 8m; client_max_body_size 8m; keepalive_requests 10000000;
  server { listen 127.0.0.1:$port ssl; ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key;
    location / { default_type application/json;
      return 200 '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"x","allowed":true}}'; } } }
CONF
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" nginx -c "$work/nginx.conf" 2>"$work/vg" & pid=$!
  else
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" serve --listen "127.0.0.1:$port" \
      --cert-dir "$work" --config "$work/one-loop.yaml" 2>"$work/vg" & pid=$!
  fi
  for _ in $(seq 1 150); do curl -sk -o /dev/null "https://127.0.0.1:$port/healthz" && break; sleep 0.2; done
  h2load --h1 -n "$n" -c 4 -d "$body" -H 'Content-Type: application/json' "https://127.0.0.1:$port/validate" \
    | grep -q "$n succeeded" || { echo "instructions: $name did not answer all $n requests" >&2; kill "$pid"; exit 1; }
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  awk '/Collected/ {print $4}' "$work/vg"
}

declare -A per
for name in nginx pxguard; do
  a=$(measure "$name" 19471 "$n1"); b=$(measure "$name" 19472 "$n2")
  per[$name]=$(( (b - a) / (n2 - n1) ))
  printf '%-8s %7d user-space instructions per request\n' "$name" "${per[$name]}"
done
python3 -c "import sys; n,p=map(int,sys.argv[1:]); print(f'pxguard/nginx {p/n:.2f}x the instructions; pxguard does {p-n} more per request')" "${per[nginx]}" "${per[pxguard]}"

#!/usr/bin/env bash
# Installs (or upgrades) pxguard with certificates it manages itself, in one command:
#   1. `pxguard certs` writes a CA and the serving pair into --certs DIR (the CA is
#      reused when DIR already has one, so upgrades keep the caBundle);
#   2. the serving pair becomes the Secret <service>-tls (type kubernetes.io/tls,
#      with ca.crt) in the server's namespace;
#   3. `pxguard render all --ca-bundle DIR/ca.crt` is applied in two steps: everything
#      but the webhook registrations, then, once the Deployment is rolled out, the
#      registrations, so that no request is sent to a server that is not serving.
# With --print nothing is applied: the manifests are written to standard output
# (the kubelet test and the schema check run on exactly this).
#
# usage: scripts/install.sh [--config FILE] [--certs DIR] [--print]
# env:   PXGUARD (the pxguard binary; default .build/release/pxguard, else on PATH)
#        KUBECTL (default kubectl)
set -euo pipefail
config=""
certs="pxguard-certs"
print=false
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --certs) certs=$2; shift 2 ;;
    --print) print=true; shift ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
pxguard=${PXGUARD:-}
if [ -z "$pxguard" ]; then
  if [ -x "$here/.build/release/pxguard" ]; then pxguard=$here/.build/release/pxguard
  elif command -v pxguard >/dev/null 2>&1; then pxguard=$(command -v pxguard)
  else echo "install: no pxguard binary: run 'make image' (or swift build -c release), or set PXGUARD" >&2; exit 2
  fi
fi
kubectl=${KUBECTL:-kubectl}
config_args=()
[ -n "$config" ] && config_args=(--config "$config")

# The server's namespace and service name, read by pxguard's own config loader (quoted
# values, flow mappings, anchors): the names the bundle renders, never a guess.
names=$("$pxguard" render "${config_args[@]}" names) || exit 2
read -r namespace service <<< "$names"

"$pxguard" certs --out "$certs" --service "$service" --namespace "$namespace" >&2
bundle=$("$pxguard" render all "${config_args[@]}" --ca-bundle "$certs/ca.crt")
b64() { base64 -w0 < "$1"; }
secret="apiVersion: v1
kind: Secret
metadata:
  name: $service-tls
  namespace: $namespace
  labels:
    app.kubernetes.io/name: pxguard
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$certs/tls.crt")
  tls.key: $(b64 "$certs/tls.key")
  ca.crt: $(b64 "$certs/ca.crt")
  ca.key: $(b64 "$certs/ca.key")"

if $print; then
  printf '%s\n---\n%s\n' "$bundle" "$secret"
  exit 0
fi
# Server-side apply: no last-applied annotation holding the private key.
apply=("$kubectl" apply --server-side --force-conflicts --field-manager=pxguard-install)
printf '%s\n' "$bundle" | "${apply[@]}" -l 'app.kubernetes.io/component!=webhook' -f -
printf '%s\n' "$secret" | "${apply[@]}" -f -
"$kubectl" -n "$namespace" rollout status "deployment/$service" --timeout=300s
printf '%s\n' "$bundle" | "${apply[@]}" -l 'app.kubernetes.io/component=webhook' -f -
echo "install: pxguard is serving; keep $certs/ca.key safe (or delete it: a new CA is made on the next run)" >&2

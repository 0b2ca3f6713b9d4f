#!/usr/bin/env bash
# Offline checks of what users apply:
#  - kubernetes-validate --strict (unknown fields fail) on the rendered bundle, on what
#    scripts/install.sh applies, and on both kustomize builds, for the oldest supported
#    Kubernetes (1.30: matchConditions GA) and the checker's newest;
#  - `kubectl kustomize deploy` equals the rendered bundle, and the cert-manager
#    overlay adds exactly the CA injection and the certificates (scripts/check-bundle.py);
#  - every registration's matchConditions evaluated with an independent CEL library.
# Installs kubernetes-validate, cel-python and PyYAML from PyPI when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v kubernetes-validate >/dev/null 2>&1 || need+=(kubernetes-validate)
python3 -c 'import celpy' 2>/dev/null || need+=(cel-python)
python3 -c 'import yaml' 2>/dev/null || need+=(pyyaml)
if [ ${#need[@]} -gt 0 ]; then
  python3 -m pip install -q --root-user-action=ignore "${need[@]}" >/dev/null 2>&1 \
    || { echo "check-manifests: cannot install ${need[*]} from PyPI" >&2; exit 1; }
fi
command -v kubectl >/dev/null 2>&1 || { echo "check-manifests: needs kubectl (client only, for kubectl kustomize)" >&2; exit 1; }
pxguard=${PXGUARD:-.build/debug/pxguard}
[ -x "$pxguard" ] || swift build --product pxguard >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

PXGUARD=$pxguard bash scripts/install.sh --certs "$work/certs" --print > "$work/install.yaml" 2>/dev/null
kubectl kustomize deploy > "$work/kustomize.yaml"
kubectl kustomize deploy/overlays/cert-manager > "$work/cert-manager.yaml"
# cert-manager's kinds have no schema in the checker; check-bundle.py checks them.
python3 - "$work/cert-manager.yaml" "$work/cert-manager-core.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and not d["apiVersion"].startswith("cert-manager.io/")]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
EOF
# The optional parts: the API-server ingress policy (apiServerCIDRs) and repair mode.
printf 'apiServerCIDRs: ["10.0.0.10/32", "fd00::10/128"]\nrules:\n  bypassPolicies: {mode: repair}\n' > "$work/options.yaml"
"$pxguard" render all --config "$work/options.yaml" > "$work/options-bundle.yaml"
grep -q 'name: pxguard-webhook-ingress' "$work/options-bundle.yaml"
for version in 1.30.0 latest; do
  flags=(--strict --quiet)
  [ "$version" = latest ] || flags+=(--kubernetes-version "$version")
  for file in deploy/base/pxguard.yaml "$work/install.yaml" "$work/kustomize.yaml" "$work/cert-manager-core.yaml" \
              "$work/options-bundle.yaml"; do
    kubernetes-validate "${flags[@]}" "$file"
  done
  echo "check-manifests: bundle, install.sh output, both kustomize builds and the optional parts pass kubernetes-validate --strict ($version)"
done
kubectl kustomize deploy/base > "$work/kustomize-base.yaml"
python3 scripts/check-bundle.py kustomize deploy/base/pxguard.yaml "$work/cert-manager.yaml" \
  "deploy=$work/kustomize.yaml" "deploy/base=$work/kustomize-base.yaml"

# matchConditions for a configuration with exempt users and groups, and repair mode.
cat > "$work/config.yaml" <<'EOF'
exemptUsers: ["break-glass-admin", "o'brien", "corp\\admin", "tab\tname"]
exemptGroups: ["platform-admins", "system:masters"]
rules:
  bypassPolicies: {mode: repair}
EOF
"$pxguard" render webhooks > "$work/webhooks-default.yaml"
"$pxguard" render webhooks --config "$work/config.yaml" > "$work/webhooks-exempt.yaml"
quiet() { "$@" > "$work/out" || { grep -v '^ok' "$work/out"; return 1; }; }
quiet python3 scripts/check-bundle.py cel "$work/webhooks-default.yaml" - -
quiet python3 scripts/check-bundle.py cel "$work/webhooks-exempt.yaml" "o'brien" platform-admins
quiet python3 scripts/check-bundle.py cel "$work/webhooks-exempt.yaml" 'corp\admin' system:masters
quiet python3 scripts/check-bundle.py cel "$work/webhooks-exempt.yaml" "$(printf 'tab\tname')" platform-admins
echo "check-manifests: matchConditions evaluate as intended under cel-python (default and exempt configurations)"

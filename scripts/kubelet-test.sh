#!/usr/bin/env bash
# Runs the install bundle's Deployment as a kubelet would (scripts/kubelet-test.py)
# on what the README tells users to apply (scripts/install.sh --print) and on the
# image `make image` writes. Needs root (mount and network namespaces, chroot,
# setuid); `make test` runs it after the Swift tests.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE_DIR=${IMAGE_DIR:-.build/image}
if [ "$(id -u)" != 0 ] || ! unshare --mount --net true 2>/dev/null; then
  echo "kubelet-test: needs root and unshare (mount, network namespaces); not run" >&2
  exit 1
fi
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q --root-user-action=ignore pyyaml >/dev/null
[ "${KUBELET_TEST_SKIP_IMAGE:-}" = 1 ] || bash scripts/image.sh >/dev/null
version=$(.build/release/pxguard --version | awk '{print $2}')
archive=$IMAGE_DIR/pxguard-$version.oci.tar
work=$(mktemp -d /tmp/pxguard-kubelet.XXXXXX)
trap 'rm -rf "$work"' EXIT
PXGUARD=.build/release/pxguard bash scripts/install.sh --certs "$work/certs" --print > "$work/manifests.yaml" 2>/dev/null
# A renewal as cert-manager or a second install.sh run makes it: same CA, new serving pair.
cp -r "$work/certs" "$work/renewed"
.build/release/pxguard certs --out "$work/renewed" >/dev/null
start=$(date +%s)
unshare --mount --net --pid --fork --kill-child \
  python3 scripts/kubelet-test.py --manifests "$work/manifests.yaml" --image "$archive" --work "$work/pod" \
  --rotated "$work/renewed"
# The control: the same bundle without the fsGroup (the bug this test was written for)
# must fail, with the key unreadable to user 65532.
python3 - "$work/manifests.yaml" "$work/no-fsgroup.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
for d in docs:
    if d["kind"] == "Deployment":
        del d["spec"]["template"]["spec"]["securityContext"]["fsGroup"]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
control=0
unshare --mount --net --pid --fork --kill-child python3 scripts/kubelet-test.py --manifests "$work/no-fsgroup.yaml" \
  --image "$archive" --work "$work/control" > "$work/control.log" 2>&1 || control=$?
if [ "$control" = 0 ] || ! grep -q 'Permission denied' "$work/control.log"; then
  echo "kubelet-test: control FAILED: without fsGroup the pod should crash on an unreadable key" >&2
  tail -5 "$work/control.log" >&2
  exit 1
fi
echo "kubelet-test: control ok: without fsGroup the same pod crashes (Permission denied on the key)"
echo "kubelet-test: $(( $(date +%s) - start ))s"

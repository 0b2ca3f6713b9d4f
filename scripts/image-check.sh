#!/usr/bin/env bash
# Checks the archive `make image` wrote with the tools users load it with: skopeo reads
# it as an OCI archive (name, user, entrypoint) and as a Docker archive, podman loads it under its versioned
# name into a throw-away store, and the root holds no shell. Installs skopeo and podman
# with apt when missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE_DIR=${IMAGE_DIR:-.build/image}
version=$(.build/release/pxguard --version | awk '{print $2}')
archive=$IMAGE_DIR/pxguard-$version.oci.tar
[ -f "$archive" ] || { echo "image-check: no $archive; run make image" >&2; exit 1; }
missing=()
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "image-check: needs ${missing[*]}" >&2; exit 1; }
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
config=$(skopeo inspect --config "oci-archive:$archive")
python3 - "$config" "$version" <<'PY'
import json, sys
config, version = json.loads(sys.argv[1]), sys.argv[2]
c = config["config"]
assert c["User"] == "65532:65532", c["User"]
assert c["Entrypoint"] == ["/usr/bin/pxguard"], c["Entrypoint"]
assert c["Labels"]["org.opencontainers.image.version"] == version
print(f"image-check: skopeo reads the OCI archive: user {c['User']}, entrypoint {c['Entrypoint']}, version {version}")
PY
store=$(mktemp -d)
containerd_pid=""
trap '[ -z "$containerd_pid" ] || kill "$containerd_pid" 2>/dev/null; rm -rf "$store"' EXIT
podman=(podman --root "$store/root" --runroot "$store/run" --storage-driver vfs)
"${podman[@]}" load -q -i "$archive" | grep -q "docker.io/library/pxguard:$version" \
  || { echo "image-check: podman load did not name the image pxguard:$version" >&2; exit 1; }
echo "image-check: podman load gives docker.io/library/pxguard:$version"
# docker load (and kind on Docker) read manifest.json: the tag must be there.
skopeo copy -q "docker-archive:$archive:pxguard:$version" "dir:$store/docker" >/dev/null \
  || { echo "image-check: manifest.json does not carry pxguard:$version" >&2; exit 1; }
echo "image-check: the Docker manifest (docker load) names pxguard:$version"
tar -tzf <(skopeo copy -q "oci-archive:$archive" "dir:$store/dir" >/dev/null && cat "$store/dir/$(python3 -c "import json,sys; print(json.load(open('$store/dir/manifest.json'))['layers'][0]['digest'].split(':')[1])")") \
  | grep -E '(^|/)(sh|bash|dash|busybox)$' && { echo "image-check: the image holds a shell" >&2; exit 1; }
echo "image-check: no shell in the image"
# What scanners read: the manifest's OCI annotations, /etc/os-release and
# /etc/debian_version (the OS: ID=debian and the release's VERSION_ID, the one the
# packages' +debNN versions and the SBOM's purls name), the dpkg status entries of the
# bundled Debian packages (status.d, as distroless), and the SBOM inside, equal to the
# one beside the archive and valid for spdx-tools.
layer="$store/dir/$(python3 -c "import json; print(json.load(open('$store/dir/manifest.json'))['layers'][0]['digest'].split(':')[1])")"
mkdir -p "$store/layer"
tar -xzf "$layer" -C "$store/layer" etc/os-release etc/debian_version var/lib/dpkg/status.d usr/share/doc/pxguard/sbom.spdx.json \
  || { echo "image-check: the image lacks /etc/os-release, /etc/debian_version, status.d or the SBOM" >&2; exit 1; }
python3 - "$store/dir/manifest.json" "$store/layer" "$IMAGE_DIR/pxguard-$version.spdx.json" "$version" <<'PY'
import json, os, re, sys
manifest, layer, sbom_beside, version = sys.argv[1:5]
annotations = json.load(open(manifest))["annotations"]
for key in ["version", "revision", "licenses", "created"]:
    assert f"org.opencontainers.image.{key}" in annotations, f"manifest lacks org.opencontainers.image.{key}"
assert annotations["org.opencontainers.image.version"] == version
release = {}
for line in open(os.path.join(layer, "etc/os-release")):
    key, sep, value = line.strip().partition("=")
    if sep:
        release[key] = value.strip("\"'")
assert release.get("ID") == "debian", f"/etc/os-release names ID={release.get('ID')}, not debian"
version_id = release.get("VERSION_ID", "")
assert re.fullmatch(r"[0-9]+", version_id), f"/etc/os-release has no numeric VERSION_ID: {version_id!r}"
debian_version = open(os.path.join(layer, "etc/debian_version")).read().strip()
assert debian_version.split(".")[0] == version_id, f"/etc/debian_version {debian_version} is not Debian {version_id}"
status = os.path.join(layer, "var/lib/dpkg/status.d")
entries = {name: open(os.path.join(status, name)).read() for name in os.listdir(status)}
for package in ["libc6", "libssl3", "libyaml-0-2"]:
    entry = entries.get(package, "")
    assert re.search(rf"^Package: {re.escape(package)}$", entry, re.M) and re.search(r"^Version: \S+", entry, re.M) \
        and re.search(r"^Status: install ok installed$", entry, re.M), f"no dpkg status entry for {package}"
for name, entry in entries.items():
    for number in re.findall(r"^Version: \S*[+~]deb([0-9]+)u", entry, re.M):
        assert number == version_id, f"{name} is from Debian {number}, /etc/os-release says VERSION_ID={version_id}"
inside = open(os.path.join(layer, "usr/share/doc/pxguard/sbom.spdx.json")).read()
assert inside == open(sbom_beside).read(), "the SBOM inside the image differs from the one beside the archive"
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
problems = validate_full_spdx_document(parse_file(sbom_beside))
assert not problems, [p.validation_message for p in problems]
document = json.loads(inside)
names = {p["name"] for p in document["packages"]}
assert {"pxguard", "swift-runtime", "libc6", "libssl3", "libyaml-0-2"} <= names, names
purls = [r["referenceLocator"] for p in document["packages"] for r in p.get("externalRefs", []) if r["referenceLocator"].startswith("pkg:deb/")]
assert purls and all(p.endswith(f"&distro=debian-{version_id}") for p in purls), purls
print(f"image-check: /etc/os-release ID=debian VERSION_ID={version_id} (debian_version {debian_version}); annotations {sorted(k.split('.')[-1] for k in annotations)}; dpkg status.d: {sorted(entries)}; SBOM valid (spdx-tools), {len(names)} packages")
PY
# kind load image-archive runs `ctr -n k8s.io images import --all-platforms --digests
# --snapshotter ...` on each node: the same against a containerd of our own (unix socket
# in the scratch folder, no CRI, native snapshotter), stopped when done.
cat > "$store/containerd.toml" <<TOML
version = 2
root = "$store/containerd-root"
state = "$store/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$store/containerd.sock"
[ttrpc]
  address = "$store/containerd-ttrpc.sock"
TOML
containerd --config "$store/containerd.toml" > "$store/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 1 50); do [ -S "$store/containerd.sock" ] && break; sleep 0.1; done
ctr=(ctr --address "$store/containerd.sock" -n k8s.io)
"${ctr[@]}" images import --all-platforms --digests --snapshotter native "$archive" >/dev/null
"${ctr[@]}" images ls -q | grep -qx "docker.io/library/pxguard:$version" \
  || { echo "image-check: ctr import did not name the image docker.io/library/pxguard:$version" >&2; exit 1; }
echo "image-check: ctr images import (as kind load image-archive runs it) gives docker.io/library/pxguard:$version"

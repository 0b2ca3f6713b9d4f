#!/usr/bin/env bash
# `make image`: an OCI image archive built from the release binary alone. No base
# image is downloaded and no container runs: the root holds the binary (Swift
# runtime linked statically), the C libraries `ldd` lists for it (OpenSSL, libyaml,
# libc, libstdc++, the dynamic loader), /etc/passwd and /etc/group naming user 65532,
# and nothing else (no shell). Tagged with `pxguard --version`, never latest.
# Scanners can see into it: /etc/os-release and /etc/debian_version naming the Debian
# release the libraries come from (the build machine's, as distroless writes them), dpkg
# status entries for the bundled Debian packages (/var/lib/dpkg/status.d, as
# distroless), their copyright files, an SPDX SBOM inside
# (/usr/share/doc/pxguard/sbom.spdx.json) and beside the archive, and OCI annotations
# (version, revision, source, licenses) on the manifest, also as config labels.
#
# Output: $IMAGE_DIR/pxguard-VERSION.oci.tar and pxguard-VERSION.spdx.json (default
# .build/image), and the root unpacked beside them in $IMAGE_DIR/rootfs for the kubelet test.
# env: PXGUARD_SOURCE (source URL; default the git remote), PXGUARD_LICENSE (pxguard's
#      own SPDX license expression; default LicenseRef-pxguard)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
IMAGE_DIR=${IMAGE_DIR:-.build/image}
SWIFT=${SWIFT:-swift}

$SWIFT build -c release --static-swift-stdlib --product pxguard 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]|^(Compiling|Building|Write|Emitting)' || true
bin=.build/release/pxguard
[ -x "$bin" ] || { echo "image: the release build failed" >&2; exit 1; }
version=$("$bin" --version | awk '{print $2}')
[ -n "$version" ] && [ "$version" != latest ] || { echo "image: no version from $bin --version" >&2; exit 1; }

root=$IMAGE_DIR/rootfs
rm -rf "$root"
mkdir -p "$root/usr/bin" "$root/etc"
install -m 0755 "$bin" "$root/usr/bin/pxguard"
# Every library the dynamic linker loads, at the path it loads it from (copies, not
# links), and the loader named in the binary's PT_INTERP.
while read -r lib; do
  [ -n "$lib" ] || continue
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
  chmod 0755 "$root$lib"
done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
if ldd "$bin" | grep -q 'libswiftCore'; then
  echo "image: the binary links the Swift runtime dynamically; expected --static-swift-stdlib" >&2
  exit 1
fi
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
archive=$IMAGE_DIR/pxguard-$version.oci.tar
sbom=$IMAGE_DIR/pxguard-$version.spdx.json
revision=$(git rev-parse HEAD 2>/dev/null || true)
# Where the source lives and pxguard's own license (an SPDX expression): set them for a
# release; the source defaults to the git remote, the license to LicenseRef-pxguard.
source_url=${PXGUARD_SOURCE:-$(git remote get-url origin 2>/dev/null || true)}
# Only a URL is a source location (a clone of a local path has a path as its remote):
# anything else is left out rather than written into the SBOM as an invalid location.
case "$source_url" in
  https://*|http://*|git+https://*|git+ssh://*|ssh://*) ;;
  *) source_url="" ;;
esac
license=${PXGUARD_LICENSE:-LicenseRef-pxguard}
swift_version=$($SWIFT --version 2>/dev/null | sed -n 's/.*Swift version \([0-9][0-9.]*\).*/\1/p' | head -1)
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
# os-release, dpkg status entries and copyright files for the bundled Debian packages, and the SBOM
# (validated with spdx-tools from PyPI), beside the archive and inside the image.
python3 -c 'import spdx_tools' 2>/dev/null || python3 -m pip install -q --root-user-action=ignore spdx-tools >/dev/null 2>&1 \
  || { echo "image: cannot install spdx-tools from PyPI (validates the SBOM)" >&2; exit 1; }
licenses=$(python3 scripts/image-metadata.py --root "$root" --version "$version" --revision "$revision" \
  --source "$source_url" --license "$license" --swift-version "$swift_version" --created "$created" --sbom "$sbom")
annotations=(--annotation "org.opencontainers.image.title=pxguard"
  --annotation "org.opencontainers.image.description=Kubernetes admission webhook guarding the Portworx API ports"
  --annotation "org.opencontainers.image.version=$version"
  --annotation "org.opencontainers.image.licenses=$licenses")
[ -n "$revision" ] && annotations+=(--annotation "org.opencontainers.image.revision=$revision")
if [ -n "$source_url" ]; then
  annotations+=(--annotation "org.opencontainers.image.source=$source_url")
else
  echo "image: no source URL (the git remote is not a URL): set PXGUARD_SOURCE for the org.opencontainers.image.source annotation" >&2
fi
python3 scripts/oci-image.py --root "$root" --name pxguard --tag "$version" \
  --entrypoint /usr/bin/pxguard --cmd=--help --user 65532:65532 \
  "${annotations[@]}" --out "$archive"
echo "image: $archive, SBOM $sbom (load with: podman load -i $archive | docker load -i $archive | kind load image-archive $archive | ctr images import $archive)"

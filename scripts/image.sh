#!/usr/bin/env bash
# `make image`: an OCI image archive built from the release binary alone. No base
# image is downloaded and no container runs: the root holds the binary (Swift
# runtime linked statically), the C libraries `ldd` lists for it (OpenSSL, libyaml,
# libc, libstdc++, the dynamic loader), /etc/passwd and /etc/group naming user 65532,
# and nothing else (no shell). Tagged with `pxguard --version`, never latest.
#
# Output: $IMAGE_DIR/pxguard-VERSION.oci.tar (default .build/image), and its root
# unpacked beside it in $IMAGE_DIR/rootfs for the kubelet test.
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
python3 scripts/oci-image.py --root "$root" --name pxguard --tag "$version" \
  --entrypoint /usr/bin/pxguard --cmd=--help --user 65532:65532 \
  --label "org.opencontainers.image.title=pxguard" --label "org.opencontainers.image.version=$version" \
  --out "$archive"
echo "image: $archive (load with: podman load -i $archive | docker load -i $archive | kind load image-archive $archive | ctr images import $archive)"

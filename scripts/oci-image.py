#!/usr/bin/env python3
"""Writes a one-layer OCI image archive from a root directory, with no base image
and no container engine: `make image` calls it on the release binary and the
libraries it links.

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that
also carries Docker's manifest.json, the layout `docker save` writes since Docker 25,
so that `podman load`, `docker load`, `kind load image-archive`, `ctr images import`
and `skopeo` read it alike. It is reproducible: entries sorted, owned by 0:0, one
timestamp (SOURCE_DATE_EPOCH), gzip without a name or time.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
import time


def layer_tar(root, mtime):
    """The root as an uncompressed tar: directories first, sorted, owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, subdirs, files in os.walk(root):
            subdirs.sort()
            for name in sorted(subdirs) + sorted(files):
                path = os.path.join(directory, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, root))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = mtime
                if info.isreg():
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    return buffer.getvalue()


def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="directory that becomes the image's filesystem")
    parser.add_argument("--name", required=True, help="repository name, e.g. pxguard")
    parser.add_argument("--tag", required=True, help="tag, e.g. the version (never latest)")
    parser.add_argument("--entrypoint", required=True)
    parser.add_argument("--cmd", action="append", default=[])
    parser.add_argument("--user", required=True, help="UID:GID")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE (config label)")
    parser.add_argument("--annotation", action="append", default=[],
                        help="KEY=VALUE: an OCI annotation on the manifest, also set as a config label")
    parser.add_argument("--out", required=True, help="archive to write")
    args = parser.parse_args()

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    workdir = args.out + ".layout"
    blobs = os.path.join(workdir, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    raw = layer_tar(args.root, mtime)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, filename="") as f:
        f.write(raw)
    layer = gz.getvalue()
    layer_digest = blob(blobs, layer)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()

    annotations = dict(a.split("=", 1) for a in args.annotation)
    labels = dict(annotations)
    labels.update(label.split("=", 1) for label in args.label)
    config = {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": {
            "User": args.user,
            "Entrypoint": [args.entrypoint],
            "Cmd": args.cmd,
            "WorkingDir": "/",
            "Env": ["PATH=/usr/bin"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "make image: the release binary and the C libraries it links"}],
    }
    config_bytes = canonical(config)
    config_digest = blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                    "size": len(layer)}],
        "annotations": {**annotations, "org.opencontainers.image.version": args.tag, "org.opencontainers.image.created": created},
    }
    manifest_bytes = canonical(manifest)
    manifest_digest = blob(blobs, manifest_bytes)
    reference = f"docker.io/library/{args.name}:{args.tag}"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "platform": {"architecture": arch, "os": "linux"},
            # The names `docker save` writes: containerd (ctr, kind) and Docker read the
            # first, skopeo and podman the second.
            "annotations": {"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": args.tag},
        }],
    }
    docker_manifest = [{
        "Config": "blobs/sha256/" + config_digest.split(":")[1],
        "RepoTags": [f"{args.name}:{args.tag}"],
        "Layers": ["blobs/sha256/" + layer_digest.split(":")[1]],
    }]
    files = {"oci-layout": canonical({"imageLayoutVersion": "1.0.0"}), "index.json": canonical(index),
             "manifest.json": canonical(docker_manifest)}
    with tarfile.open(args.out, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        dir_info = tarfile.TarInfo("blobs")
        dir_info.type, dir_info.mode, dir_info.mtime = tarfile.DIRTYPE, 0o755, mtime
        tar.addfile(dir_info)
        dir_info = tarfile.TarInfo("blobs/sha256")
        dir_info.type, dir_info.mode, dir_info.mtime = tarfile.DIRTYPE, 0o755, mtime
        tar.addfile(dir_info)
        for digest in sorted(os.listdir(blobs)):
            with open(os.path.join(blobs, digest), "rb") as f:
                add("blobs/sha256/" + digest, f.read())
        for name, data in files.items():
            add(name, data)
    for digest in os.listdir(blobs):
        os.remove(os.path.join(blobs, digest))
    os.removedirs(blobs)
    print(f"{args.out}: {reference} ({arch}, layer {len(layer)} bytes, manifest {manifest_digest})")


if __name__ == "__main__":
    main()

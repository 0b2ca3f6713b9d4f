#!/usr/bin/env python3
"""Package metadata for the image `make image` builds, so that scanners see what it carries.

- /var/lib/dpkg/status.d/NAME: the dpkg status entry of every Debian package a bundled
  file came from (found with `dpkg -S`), as distroless images ship them (Trivy, Grype and
  Syft read this directory), with /usr/share/doc/NAME/copyright beside it.
- /etc/os-release (distroless-style: ID=debian and the VERSION_ID of the Debian release
  the libraries come from, read from the build machine's os-release and checked against
  the packages' +debNN versions) and /etc/debian_version, so that scanners detect the OS
  (Trivy's Debian detection reads debian_version; Syft and Grype read os-release).
- An SPDX 2.3 JSON SBOM describing pxguard, the Debian packages (purl pkg:deb/debian/...)
  and the Swift runtime linked statically into the binary, written to --sbom and into the
  image at /usr/share/doc/pxguard/sbom.spdx.json. It is validated with spdx-tools (the SPDX
  project's own library, from PyPI) before anything is written; an invalid SBOM fails
  the build.

Prints the OCI `org.opencontainers.image.licenses` expression for the image on stdout.
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

# Licenses of the bundled Debian sources (their copyright files say so; SPDX names).
SOURCE_LICENSES = {
    "openssl": "Apache-2.0",
    "libyaml": "MIT",
    "glibc": "LGPL-2.1-or-later",
    "gcc-12": "GPL-3.0-or-later WITH GCC-exception-3.1",
}
SWIFT_LICENSE = "Apache-2.0 WITH Swift-exception"


def dpkg_package(path):
    """The Debian package (name:arch) that installed `path`, trying the /usr-merged twin."""
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/lib"):
            candidates.append("/usr" + p)
        elif p.startswith("/usr/lib"):
            candidates.append(p[len("/usr"):])
    for p in candidates:
        result = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        if result.returncode == 0:
            # "libssl3:amd64: /usr/lib/x86_64-linux-gnu/libssl.so.3"
            return result.stdout.splitlines()[0].split(": ")[0].split(", ")[0]
    return None


def status_entry(package):
    result = subprocess.run(["dpkg-query", "-s", package], capture_output=True, text=True, check=True)
    return result.stdout.rstrip("\n") + "\n"


def field(entry, name):
    match = re.search(rf"^{name}: (.*)$", entry, re.M)
    return match.group(1).strip() if match else None


def os_release(path):
    """The KEY=value pairs of an os-release file, quotes removed."""
    pairs = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                pairs[key] = value.strip().strip("\"'")
    return pairs


def debian_release(versions):
    """The build machine's os-release, which must be a Debian release whose number the
    bundled packages' versions agree with (`2.36-9+deb12u4`, `3.0.15-1~deb12u1`)."""
    path = next((p for p in ["/etc/os-release", "/usr/lib/os-release"] if os.path.exists(p)), None)
    if path is None:
        sys.exit("image-metadata: the build machine has no os-release; cannot say which Debian release the libraries come from")
    release = os_release(path)
    if release.get("ID") != "debian" or not re.fullmatch(r"[0-9]+", release.get("VERSION_ID", "")):
        sys.exit(f"image-metadata: {path} names ID={release.get('ID')} VERSION_ID={release.get('VERSION_ID')}; "
                 "the image describes its libraries as packages of a numbered Debian release: build on Debian stable")
    for package, version in sorted(versions.items()):
        for number in re.findall(r"[+~]deb([0-9]+)u", version):
            if number != release["VERSION_ID"]:
                sys.exit(f"image-metadata: {package} {version} is from Debian {number}, but {path} says "
                         f"VERSION_ID={release['VERSION_ID']}")
    return release


def write_os_release(root, release):
    """/etc/os-release as distroless writes it (the Debian release, its own PRETTY_NAME),
    and /etc/debian_version copied from the build machine."""
    version_id = release["VERSION_ID"]
    codename = release.get("VERSION_CODENAME", "")
    lines = [
        f'PRETTY_NAME="pxguard (Debian GNU/Linux {version_id}{f" ({codename})" if codename else ""} libraries)"',
        'NAME="Debian GNU/Linux"',
        "ID=debian",
        f'VERSION_ID="{version_id}"',
        f'VERSION="{release.get("VERSION", version_id)}"',
    ]
    if codename:
        lines.append(f"VERSION_CODENAME={codename}")
    lines += [f'{key}="{release[key]}"' for key in ["HOME_URL", "SUPPORT_URL", "BUG_REPORT_URL"] if key in release]
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    with open(os.path.join(root, "etc/os-release"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(os.path.join(root, "etc/os-release"), 0o644)
    if os.path.exists("/etc/debian_version"):
        shutil.copyfile("/etc/debian_version", os.path.join(root, "etc/debian_version"))
        os.chmod(os.path.join(root, "etc/debian_version"), 0o644)
    else:
        with open(os.path.join(root, "etc/debian_version"), "w") as f:
            f.write(version_id + "\n")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the image's root directory")
    parser.add_argument("--version", required=True)
    parser.add_argument("--revision", default="")
    parser.add_argument("--source", default="")
    parser.add_argument("--license", default="LicenseRef-pxguard")
    parser.add_argument("--swift-version", default="")
    parser.add_argument("--created", required=True, help="RFC 3339 time (SOURCE_DATE_EPOCH)")
    parser.add_argument("--sbom", required=True, help="where to write the SBOM beside the archive")
    args = parser.parse_args()
    root = args.root

    # Which Debian package each bundled library came from.
    packages = {}
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            inside = "/" + os.path.relpath(os.path.join(directory, name), root)
            if not re.match(r"^/(usr/)?lib", inside):
                continue
            package = dpkg_package(inside)
            if package is None:
                sys.exit(f"image-metadata: no Debian package owns {inside}; cannot describe it")
            packages.setdefault(package, []).append(inside)

    entries = {package: status_entry(package) for package in packages}
    release = debian_release({package: field(entry, "Version") or "" for package, entry in entries.items()})
    write_os_release(root, release)
    distro = f"debian-{release['VERSION_ID']}"

    status_dir = os.path.join(root, "var/lib/dpkg/status.d")
    os.makedirs(status_dir, exist_ok=True)
    spdx_packages = []
    relationships = []
    licenses = [args.license, SWIFT_LICENSE]
    pxguard_id = "SPDXRef-Package-pxguard"
    for package in sorted(packages):
        entry = entries[package]
        name = field(entry, "Package")
        version = field(entry, "Version")
        arch = field(entry, "Architecture")
        source = (field(entry, "Source") or name).split()[0]
        with open(os.path.join(status_dir, name), "w") as f:
            f.write(entry)
        copyright_file = f"/usr/share/doc/{name}/copyright"
        if os.path.exists(copyright_file):
            os.makedirs(os.path.join(root, f"usr/share/doc/{name}"), exist_ok=True)
            shutil.copyfile(copyright_file, os.path.join(root, copyright_file.lstrip("/")))
        license_expr = SOURCE_LICENSES.get(source, "NOASSERTION")
        if license_expr != "NOASSERTION" and license_expr not in licenses:
            licenses.append(license_expr)
        spdx_id = "SPDXRef-Package-deb-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)
        spdx_packages.append({
            "SPDXID": spdx_id,
            "name": name,
            "versionInfo": version,
            "supplier": "Organization: Debian",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "licenseConcluded": license_expr,
            "licenseDeclared": license_expr,
            "copyrightText": "NOASSERTION",
            "sourceInfo": f"built from Debian source package {source}; bundled as {', '.join(packages[package])}",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": f"pkg:deb/debian/{name}@{version}?arch={arch}&distro={distro}",
            }],
        })
        relationships.append({"spdxElementId": pxguard_id, "relationshipType": "DEPENDS_ON", "relatedSpdxElement": spdx_id})

    binary = os.path.join(root, "usr/bin/pxguard")
    pxguard = {
        "SPDXID": pxguard_id,
        "name": "pxguard",
        "versionInfo": args.version,
        "supplier": "Organization: pxguard",
        "downloadLocation": args.source or "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": args.license,
        "licenseDeclared": args.license,
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "APPLICATION",
        "checksums": [{"algorithm": "SHA256", "checksumValue": sha256(binary)}],
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": f"pkg:generic/pxguard@{args.version}"}],
    }
    if args.revision:
        pxguard["sourceInfo"] = f"git revision {args.revision}"
    swift = {
        "SPDXID": "SPDXRef-Package-swift-runtime",
        "name": "swift-runtime",
        "versionInfo": args.swift_version or "NOASSERTION",
        "supplier": "Organization: Swift.org",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "licenseConcluded": SWIFT_LICENSE,
        "licenseDeclared": SWIFT_LICENSE,
        "copyrightText": "NOASSERTION",
        "sourceInfo": "the Swift standard library and runtime, linked statically into /usr/bin/pxguard (--static-swift-stdlib)",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": f"pkg:generic/swift@{args.swift_version or 'unknown'}"}],
    }
    relationships.insert(0, {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": pxguard_id})
    relationships.append({"spdxElementId": pxguard_id, "relationshipType": "STATIC_LINK", "relatedSpdxElement": swift["SPDXID"]})
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"pxguard-{args.version}-image",
        "documentNamespace": f"https://spdx.org/spdxdocs/pxguard-{args.version}-{args.revision or 'unknown'}",
        "creationInfo": {"created": args.created, "creators": ["Tool: pxguard-make-image"]},
        "packages": [pxguard, swift] + spdx_packages,
        "relationships": relationships,
    }
    refs = sorted(set(re.findall(r"LicenseRef-[A-Za-z0-9.-]+", args.license)))
    if refs:
        # A license that is not on the SPDX list must be declared in the document.
        document["hasExtractedLicensingInfos"] = [{
            "licenseId": ref, "name": ref[len("LicenseRef-"):],
            "extractedText": "pxguard's own license: see the LICENSE file of its source repository (set PXGUARD_LICENSE to an SPDX id once chosen).",
        } for ref in refs]
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"

    # Validate with the SPDX project's library before writing anything that ships.
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    check = args.sbom + ".check.spdx.json"
    with open(check, "w") as f:
        f.write(text)
    try:
        problems = validate_full_spdx_document(parse_file(check))
    finally:
        os.remove(check)
    if problems:
        for problem in problems:
            print(f"image-metadata: invalid SBOM: {problem.validation_message}", file=sys.stderr)
        sys.exit(1)
    with open(args.sbom, "w") as f:
        f.write(text)
    os.makedirs(os.path.join(root, "usr/share/doc/pxguard"), exist_ok=True)
    with open(os.path.join(root, "usr/share/doc/pxguard/sbom.spdx.json"), "w") as f:
        f.write(text)
    print(" AND ".join(f"({l})" if " " in l else l for l in licenses))


if __name__ == "__main__":
    main()

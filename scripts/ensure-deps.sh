#!/usr/bin/env bash
# Makes sure the C libraries pxguard links (OpenSSL 3, libyaml) and pkg-config are
# present; installs them with apt when missing, or stops with a clear message.
set -euo pipefail
missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
pkg-config --exists yaml-0.1 2>/dev/null || missing+=(libyaml-dev)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} with apt-get" >&2
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  else
    echo "pxguard needs ${missing[*]}: install them (e.g. sudo apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
fi
command -v swift >/dev/null 2>&1 || { echo "pxguard needs a Swift 6 toolchain on PATH (swift --version)" >&2; exit 1; }

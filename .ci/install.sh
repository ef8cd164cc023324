#!/usr/bin/env bash
# Installs everything the studio and its tests need on a fresh Debian machine (root, Python 3.11).
# Idempotent: safe to run again; skips what is already there.
# usage: bash .ci/install.sh [--tests]   (--tests also builds the OpenXR runtime the tests use)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

# System packages: EGL + Mesa llvmpipe (headless rendering), Xvfb (desktop viewer test),
# Chromium (three.js reference renders), Node.js/npm (Khronos glTF-Validator, WebXR client).
# Libraries are checked with dpkg; tools by command, since Node.js may come from elsewhere
# (e.g. nodesource's nodejs bundles npm and conflicts with Debian's npm package).
missing=""
for p in libegl1 libgl1-mesa-dri libgles2 xvfb xauth; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
  log "apt-get install$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Python: torch first and pinned, so nothing pulls a multi-GB CUDA build.
log "pip install torch==2.13.0 and the studio (editable, with dev extras)"
python -m pip install -q --disable-pip-version-check "torch==2.13.0"
python -m pip install -q --disable-pip-version-check -e ".[dev]"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

# npm: the Khronos glTF-Validator (repo root) and the three.js reference harness.
for dir in . tests/threejs xr; do
  if [ -f "$dir/package-lock.json" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
done
# OpenXR runtime for the tests (tests/test_openxr.py): Monado with a simulated HMD and the null
# compositor, built once into /var/cache/studio/monado-<sha> outside the clone (skipped when cached;
# tests/conftest.py finds it there). Only with --tests: the studio itself does not need it.
if [ "${1:-}" = "--tests" ]; then
  log "Monado OpenXR runtime (cached build)"
  .ci/build_monado.sh >/dev/null
fi
log "install done"

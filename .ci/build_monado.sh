#!/usr/bin/env bash
# Build the Monado OpenXR runtime (simulated HMD, null compositor, CPU only) from the peer
# tarball in ../shared/peers/monado/ into a cache folder OUTSIDE the clone, keyed by the
# tarball's sha256, and print the path of its runtime manifest (for XR_RUNTIME_JSON).
#
# usage: .ci/build_monado.sh            -> prints /var/cache/studio/monado-<sha12>/openxr_monado-dev.json
# env:   MONADO_SRC   folder with build.sh + monado-*.tar.gz (default ../shared/peers/monado from the repo root)
#        STUDIO_CACHE cache root (default /var/cache/studio)
#        SKIP_APT=1   do not apt-get the build packages (passed to build.sh); JOBS (default nproc)
# stdout carries only the manifest path; the build log goes to stderr.
# The build is skipped when the cached manifest exists; a lock serialises concurrent callers.
set -euo pipefail
cd "$(dirname "$0")/.."

MONADO_SRC=${MONADO_SRC:-../shared/peers/monado}
CACHE_ROOT=${STUDIO_CACHE:-/var/cache/studio}

if [ ! -f "$MONADO_SRC/build.sh" ]; then
  echo "build_monado: no $MONADO_SRC/build.sh (set MONADO_SRC)" >&2
  exit 2
fi
MONADO_SRC=$(cd "$MONADO_SRC" && pwd)
tarball=$(ls "$MONADO_SRC"/monado-*.tar.gz | head -n 1)
sha=$(sha256sum "$tarball" | cut -c1-12)
build_dir="$CACHE_ROOT/monado-$sha"
manifest="$build_dir/openxr_monado-dev.json"

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/monado-$sha.lock"
flock 9

lib="$build_dir/build/src/xrt/targets/openxr/libopenxr_monado.so"
runtime_ok() {
  # the cached library's shared libraries resolve, and lavapipe (loaded at run time) is installed
  ! ldd "$lib" 2>/dev/null | grep -q "not found" &&
    { [ "${SKIP_APT:-0}" = 1 ] || dpkg -s mesa-vulkan-drivers libvulkan1 >/dev/null 2>&1; }
}

# -e follows the symlink build.sh leaves, so a half-done build (link but no target) rebuilds.
# A cache restored onto a fresh machine reruns build.sh for its apt packages (ninja then has nothing to do).
if [ -e "$manifest" ] && [ -f "$lib" ] && runtime_ok; then
  echo "build_monado: cached $manifest" >&2
else
  echo "build_monado: building Monado from $tarball into $build_dir (3-5 min on 2 cores)" >&2
  start=$(date +%s)
  bash "$MONADO_SRC/build.sh" "$build_dir" >&2
  echo "build_monado: built in $(( $(date +%s) - start )) s" >&2
fi

[ -e "$manifest" ] || { echo "build_monado: $manifest missing after build" >&2; exit 1; }
echo "$manifest"

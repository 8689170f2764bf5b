#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the missing packages, builds with
# warnings as errors, installs diofs (the mount(8) and fstab tests use the installed helper,
# as a user would), and runs every test with ctest. Needs root for the real mounts; with
# CI=true a mount test that cannot run fails instead of skipping.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../mount_helpers/install-deps.sh
. "$repo/mount_helpers/install-deps.sh"
build=${DIOFS_BUILD_DIR:-$repo/build}

diofs_install_missing_packages
diofs_load_fuse
cmake -S "$repo" -B "$build" -DDIOFS_WERROR=ON -DDIOFS_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
if [ "$(id -u)" = 0 ]; then
    cmake --install "$build" >/dev/null
else
    echo "tests/run.sh: not root: diofs is not installed, the mount tests will skip"
fi
cd "$build"
ctest --output-on-failure --timeout 900 "$@"

#!/usr/bin/env bash
# Installs what is missing, builds (against libfuse 3.16 or newer: the system's, or 3.18.3 built
# from Debian's source package on Debian 12; DIOFS_LIBFUSE=system for the system's 3.14),
# installs diofs (/usr/local/bin/diofs, the mount(8) and umount(8) helpers
# /sbin/mount.fuse.diofs and /sbin/umount.fuse.diofs) and mounts:
#
#     mount_helpers/setup.sh                          # demo: /srv/diofs-demo on /mnt/diofs-demo, dbopt,nosuid,nodev
#     mount_helpers/setup.sh SOURCE MOUNTPOINT [OPTIONS]
#
# Needs root (or sudo) for the packages, the install and the mount.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=install-deps.sh
. "$repo/mount_helpers/install-deps.sh"

source_dir=${1:-/srv/diofs-demo}
mountpoint=${2:-/mnt/diofs-demo}
options=${3:-dbopt,nosuid,nodev}
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

diofs_install_missing_packages
diofs_load_fuse
libfuse_prefix=$(diofs_libfuse_prefix)
cmake -S "$repo" -B "$repo/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDIOFS_BUILD_TESTS=OFF \
    -DDIOFS_LIBFUSE_PREFIX="$libfuse_prefix" >/dev/null
cmake --build "$repo/build" -j"$(nproc)"
$sudo cmake --install "$repo/build"

if [ $# -eq 0 ] && [ ! -e "$source_dir/README" ]; then
    $sudo mkdir -p "$source_dir"
    echo "This directory is mirrored by diofs at $mountpoint." | $sudo tee "$source_dir/README" >/dev/null
fi
$sudo mkdir -p "$mountpoint"
if findmnt -n -t fuse.diofs "$mountpoint" >/dev/null; then
    echo "diofs: $mountpoint was mounted already; remounting with the new build"
    $sudo umount "$mountpoint"
fi
$sudo mount -t fuse.diofs "$source_dir" "$mountpoint" -o "$options"
findmnt "$mountpoint"
echo "diofs: $source_dir is mounted on $mountpoint ($options). Unmount with: umount $mountpoint"

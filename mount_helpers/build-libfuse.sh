#!/usr/bin/env bash
# Builds libfuse 3.18.3 from Debian's source package (sid's source archive) into a private
# prefix, as a static library: the default build of diofs on a system whose libfuse is older
# than 3.16 (Debian 12 has 3.14) links it (mount_helpers/install-deps.sh, diofs_libfuse_prefix):
#
#     mount_helpers/build-libfuse.sh [PREFIX]       # default /opt/diofs-libfuse-3.18.3
#     cmake -S . -B build -DDIOFS_LIBFUSE_PREFIX=/opt/diofs-libfuse-3.18.3
#
# Nothing of the system's libfuse changes: only the static library, its headers and its
# pkg-config file go to PREFIX (no shared library, no fusermount3, no mount.fuse3, no udev
# rule, no init script; a daemon of that build that needs fusermount3, for auto_unmount, runs
# the system's). Linked statically, diofs needs nothing of PREFIX once built. The apt source it
# adds, /etc/apt/sources.list.d/diofs-sid-src.sources, is deb-src only: no binary package can
# come from sid. Built with io_uring (liburing and libnuma from Debian 12). Run again, it does
# nothing once PREFIX holds this build. Needs root (apt-get) unless everything is there already.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=install-deps.sh
. "$repo/mount_helpers/install-deps.sh"

version=3.18.3
debian_version=$version-1
# What the stamp vouches for: this version, built as a static library only.
build_id="$debian_version static"
prefix=${1:-${DIOFS_LIBFUSE_PREFIX:-/opt/diofs-libfuse-$version}}
stamp=$prefix/.diofs-libfuse-version
if [ "$(cat "$stamp" 2>/dev/null)" = "$build_id" ] &&
    [ -f "$prefix/lib/pkgconfig/fuse3.pc" ]; then
    echo "build-libfuse.sh: libfuse $debian_version is already in $prefix"
    exit 0
fi

sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
# The build's own needs (Debian's Build-Depends: meson, pkgconf), dpkg-source to unpack, and
# liburing (with IORING_SETUP_SQE128: 2.3 has it) and libnuma, without which libfuse's meson
# silently leaves out FUSE over io_uring.
diofs_install_missing_packages meson ninja-build pkg-config dpkg-dev liburing-dev libnuma-dev

# sid's sources, in the same deb822 form and from the same mirror as Debian's own entry.
sources=/etc/apt/sources.list.d/diofs-sid-src.sources
if ! apt-cache showsrc "fuse3=$debian_version" 2>/dev/null | grep -q "^Version: $debian_version\$"; then
    if [ ! -f "$sources" ]; then
        mirror=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }' \
            /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
        $sudo tee "$sources" >/dev/null <<EOF
# Written by diofs's mount_helpers/build-libfuse.sh: Debian sid's *source* packages only
# (deb-src), to build libfuse $version into a private prefix. No binary package comes from here.
Types: deb-src
URIs: $mirror
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    $sudo apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null
fi

work=$(mktemp -d /var/tmp/diofs-libfuse.XXXXXX)
trap 'rm -rf "$work"' EXIT
# apt's download sandbox (user _apt) must be able to write here.
chmod 755 "$work"
(cd "$work" && apt-get source -q --download-only "fuse3=$debian_version" >/dev/null 2>&1) ||
    { echo "build-libfuse.sh: apt-get source fuse3=$debian_version failed" >&2; exit 1; }
# Unpacks the upstream tarball and applies Debian's patches. (It cannot check the .dsc's own
# signature without the uploader's key and says so; apt-get source has checked every file
# against the signed Sources index of sid already.)
dpkg-source -x "$work/fuse3_$debian_version.dsc" "$work/src" >/dev/null

# No utils (fusermount3 would want setuid root), no examples, no tests; libdir lib/ so that the
# pkg-config file is at PREFIX/lib/pkgconfig whatever the distribution's multiarch default.
meson setup "$work/build" "$work/src" --prefix="$prefix" --libdir=lib --buildtype=release \
    --default-library=static \
    -Dutils=false -Dexamples=false -Dtests=false -Duseroot=false -Denable-io-uring=true \
    >"$work/meson.log" || { cat "$work/meson.log"; exit 1; }
if ! grep -q '^#define HAVE_URING' "$work/build/fuse_config.h"; then
    echo "build-libfuse.sh: meson did not enable io_uring (liburing/libnuma?):" >&2
    grep -i -E 'uring|numa' "$work/meson.log" >&2 || true
    exit 1
fi
ninja -C "$work/build" >"$work/ninja.log" || { tail -50 "$work/ninja.log"; exit 1; }
# Installed beside PREFIX first and moved into place whole: an interrupted run leaves no half
# prefix that the stamp would vouch for.
DESTDIR="$work/stage" meson install -C "$work/build" --quiet >/dev/null
$sudo rm -rf "$prefix"
$sudo mkdir -p "$(dirname "$prefix")"
$sudo mv "$work/stage$prefix" "$prefix"
echo "$build_id" | $sudo tee "$stamp" >/dev/null
echo "build-libfuse.sh: libfuse $debian_version installed in $prefix"

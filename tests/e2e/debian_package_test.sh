#!/bin/bash
# The Debian package: `cpack -G DEB` in the build directory makes diofs_VERSION_amd64.deb with
# the right dependencies and files; installed with apt-get in place of the `cmake --install`
# files, `mount -t fuse.diofs` and an fstab line (mount --fstab FILE) work with it, umount
# uses its helper; `apt-get remove` and `purge` leave nothing of it behind.
#
# It swaps the installed files every test of mount(8) uses (RUN_SERIAL in CMakeLists.txt), and
# puts back exactly what was installed before (copies of the files, taken first), also when it
# fails.
#
#   debian_package_test.sh BUILD_DIR

E2E_TIMEOUT=${E2E_TIMEOUT:-120}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

build_dir=${1:?usage: debian_package_test.sh BUILD_DIR}
require_tools cpack dpkg dpkg-deb apt-get
[[ -f "$build_dir/CPackConfig.cmake" ]] || fail "$build_dir has no CPackConfig.cmake (configure it first)"
if dpkg -s diofs >/dev/null 2>&1; then
    skip "the diofs package is installed already: this test does not touch it"
fi

# The files `cmake --install` puts down: its manifest, and what this and earlier versions
# installed (the man page was not compressed before).
installed_files=(/usr/local/bin/diofs /sbin/mount.fuse.diofs /sbin/umount.fuse.diofs
                 /usr/local/share/man/man8/diofs.8 /usr/local/share/man/man8/diofs.8.gz
                 /usr/local/share/doc/diofs/examples/srv-arch.mount)
if [[ -f "$build_dir/install_manifest.txt" ]]; then
    mapfile -t -O "${#installed_files[@]}" installed_files <"$build_dir/install_manifest.txt"
fi
backup=$E2E_TMP/installed
mkdir "$backup"
saved=()
for f in "${installed_files[@]}"; do
    [[ -e "$f" && ! -e "$backup$f" ]] || continue
    mkdir -p "$backup$(dirname "$f")"
    cp -a -- "$f" "$backup$f"
    saved+=("$f")
done
note "saved ${#saved[@]} installed files: ${saved[*]:-none}"

# Put back what was there: the package goes, the saved files come back. Before lib.sh's own
# cleanup, with this test's mounts gone first (their umount uses the helper being swapped).
restore_installed() {
    local status=$? m f
    set +e
    for m in "${E2E_MOUNTS[@]}"; do e2e_unmount_quietly "$m"; done
    if dpkg-query -W diofs >/dev/null 2>&1; then
        note "cleanup: purging the diofs package"
        DEBIAN_FRONTEND=noninteractive apt-get purge -y -q diofs >"$E2E_TMP/cleanup-apt.out" 2>&1 ||
            { note "cleanup: apt-get purge failed:"; cat "$E2E_TMP/cleanup-apt.out"; }
    fi
    for f in "${saved[@]}"; do
        if [[ ! -e "$f" ]] || ! cmp -s "$backup$f" "$f"; then
            mkdir -p "$(dirname "$f")"
            cp -a -- "$backup$f" "$f" || note "cleanup: cannot put back $f"
        fi
    done
    (exit "$status")
    e2e_cleanup
}
trap restore_installed EXIT

# --- the package -------------------------------------------------------------------------------
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build_dir/CPackConfig.cmake")
[[ -n "$version" ]] || fail "no CPACK_PACKAGE_VERSION in $build_dir/CPackConfig.cmake"
out=$E2E_TMP/package
mkdir "$out"
(cd "$build_dir" && cpack -G DEB -B "$out") >"$E2E_TMP/cpack.log" 2>&1 ||
    { cat "$E2E_TMP/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb=$out/diofs_${version}_amd64.deb
[[ -f "$deb" ]] || fail "cpack made no $deb: $(ls "$out")"
ok "cpack -G DEB made $(basename "$deb")"

# Each package the daemon needs is in Depends by its name or by a name it provides (Debian's
# shlibs file of libspdlog1.10 names libspdlog1.10-fmt9, which libspdlog1.10 provides): fuse3,
# and the package of each shared library the daemon is linked with (libfuse3-3 when built
# against the system's libfuse; liburing2 and libnuma1 when libfuse 3.18 is linked in).
depends=$(dpkg-deb -f "$deb" Depends)
depends_names=" $(sed 's/([^)]*)//g; s/[,|]/ /g' <<<"$depends" | tr -s ' ') "
needed=fuse3
for lib in $(ldd "$build_dir/diofs" | awk '$3 ~ /^\// { print $3 }'); do
    owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null) ||
        fail "no package has $lib, which the daemon is linked with"
    needed="$needed ${owner%%:*}"
done
grep -qw libspdlog1.10 <<<"$needed" || fail "the daemon is not linked with spdlog: $needed"
for package in $needed; do
    found=0
    for name in "$package" $(dpkg-query -W -f '${Provides}' "$package" | sed 's/([^)]*)//g; s/,/ /g'); do
        [[ $depends_names == *" $name "* ]] && found=1
    done
    ((found)) || fail "Depends names neither $package nor what it provides: $depends"
done
assert_eq admin "$(dpkg-deb -f "$deb" Section)" "Section"
[[ -n "$(dpkg-deb -f "$deb" Maintainer)" ]] || fail "no Maintainer"
ok "Depends: $depends"

contents=$(dpkg-deb -c "$deb" | awk '{ print $6 }')
for f in ./usr/bin/diofs ./sbin/mount.fuse.diofs ./sbin/umount.fuse.diofs \
         ./usr/share/man/man8/diofs.8.gz ./usr/share/doc/diofs/examples/srv-arch.mount; do
    grep -Fxq -- "$f" <<<"$contents" || fail "the package lacks $f; it has: $(tr '\n' ' ' <<<"$contents")"
done
grep -F -- local <<<"$contents" && fail "the package has files under a /usr/local path"
dpkg-deb -x "$deb" "$E2E_TMP/unpacked"
grep -Fxq "DIOFS='/usr/bin/diofs'" "$E2E_TMP/unpacked/sbin/mount.fuse.diofs" ||
    fail "the packaged mount.fuse.diofs does not run /usr/bin/diofs: $(grep '^DIOFS=' "$E2E_TMP/unpacked/sbin/mount.fuse.diofs")"
gzip -t "$E2E_TMP/unpacked/usr/share/man/man8/diofs.8.gz" || fail "the man page is not gzip"
ok "the package holds the daemon in /usr/bin, both helpers (mount.fuse.diofs runs /usr/bin/diofs), the man page and the example unit"

# --- installed in place of cmake --install's files -------------------------------------------
for f in "${saved[@]}"; do
    rm -f -- "$f"
done
rmdir -p --ignore-fail-on-non-empty /usr/local/share/doc/diofs/examples 2>/dev/null || true
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb" >"$E2E_TMP/apt-install.log" 2>&1 ||
    { cat "$E2E_TMP/apt-install.log" >&2; fail "apt-get install $deb failed"; }
assert_eq install "$(dpkg-query -W -f '${Status}' diofs | awk '{ print $1 }')" "the package's state"
assert_eq /usr/bin/diofs "$(PATH=/usr/local/bin:/usr/bin:/bin command -v diofs)" "diofs on PATH"
/usr/bin/diofs --version | grep -Fq "diofs $version" || fail "diofs --version: $(/usr/bin/diofs --version)"
mapfile -t listed < <(dpkg -L diofs)
ok "apt-get install $(basename "$deb"): ${#listed[@]} paths"

src=$E2E_TMP/src
mnt=$E2E_TMP/mnt
mkdir "$src" "$mnt"
echo "from the backing directory" >"$src/hello"

# through_the_mount HOW: the mount on $mnt is the packaged daemon's, and files cross.
through_the_mount() {
    the_daemon "$mnt"
    assert_eq /usr/bin/diofs "$(readlink "/proc/$DAEMON_PID/exe")" "the daemon's program ($1)"
    assert_eq "from the backing directory" "$(cat "$mnt/hello")" "a backing file read ($1)"
    echo "written through the mount" >"$mnt/written"
    assert_eq "written through the mount" "$(cat "$src/written")" "a file written through the mount ($1)"
    rm "$mnt/written"
    umount "$mnt" || fail "umount $mnt ($1)"
    wait_until 2 pid_gone "$DAEMON_PID" || fail "the daemon still runs after umount returned ($1)"
}

track_mount "$mnt"
mount -t fuse.diofs "$src" "$mnt" -o dbopt || fail "mount -t fuse.diofs with the package failed"
assert_eq fuse.diofs "$(mount_fstype "$mnt")" "type of the mount"
through_the_mount "mount -t fuse.diofs"
ok "mount -t fuse.diofs SRC MNT -o dbopt, and umount, with the package"

printf '%s %s fuse.diofs dbopt,nofail 0 0\n' "$src" "$mnt" >"$E2E_TMP/fstab"
mount --fstab "$E2E_TMP/fstab" "$mnt" || fail "mount --fstab $E2E_TMP/fstab $mnt failed"
assert_eq fuse.diofs "$(mount_fstype "$mnt")" "type of the fstab mount"
through_the_mount "an fstab line"
ok "an fstab line (mount --fstab FILE MNT), and umount, with the package"

# --- removed -----------------------------------------------------------------------------------
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q diofs >"$E2E_TMP/apt-remove.log" 2>&1 ||
    { cat "$E2E_TMP/apt-remove.log" >&2; fail "apt-get remove diofs failed"; }
# The package has no configuration files: dpkg forgets it at remove, and apt-get purge would
# then not find it.
if dpkg-query -W diofs >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q diofs >>"$E2E_TMP/apt-remove.log" 2>&1 ||
        { cat "$E2E_TMP/apt-remove.log" >&2; fail "apt-get purge diofs failed"; }
fi
dpkg-query -W diofs >/dev/null 2>&1 && fail "dpkg still knows the diofs package after purge"
for p in "${listed[@]}"; do
    [[ -d "$p" ]] && continue  # directories: shared (/usr/bin, /sbin) or checked below
    [[ -e "$p" || -L "$p" ]] && fail "$p (listed by dpkg -L diofs) is still there after purge"
done
left=$(find /usr/bin /usr/sbin /usr/share/man /usr/share/doc/diofs -name '*diofs*' 2>/dev/null || true)
[[ -z "$left" ]] || fail "left behind after purge: $left"
[[ ! -e /usr/share/doc/diofs ]] || fail "/usr/share/doc/diofs is still there after purge"
ok "apt-get remove and purge leave none of the ${#listed[@]} paths, nothing named diofs"

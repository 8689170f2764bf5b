#!/bin/bash
# The installed diofs through mount(8): `mount -t fuse.diofs`, fstab lines (an alternative
# fstab with mount -T), umount, suid and dev (what mount(8) tells the helper, and a user's
# fstab line in a private mount namespace), and `umount -a -t fuse.diofs` (in a private mount
# namespace, where it cannot touch anybody else's mounts). Needs `cmake --install build`: mount(8) finds
# only /sbin/mount.fuse.diofs, which runs the installed diofs, not $DIOFS_BINARY.

E2E_TIMEOUT=${E2E_TIMEOUT:-45}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_installed /sbin/mount.fuse.diofs
require_tools mount umount findmnt unshare timeout

src=$E2E_TMP/backing
mnt=$E2E_TMP/mnt
mkdir "$src" "$mnt"
echo "from the backing directory" >"$src/hello"

# passes_through MOUNTPOINT SOURCE: files cross in both directions.
passes_through() {
    assert_eq "from the backing directory" "$(cat "$1/hello")" "a backing file read through $1"
    echo "written through $1" >"$1/written"
    assert_eq "written through $1" "$(cat "$2/written")" "a file written through $1, in $2"
    rm "$1/written"
    [[ ! -e "$2/written" ]] || fail "a file removed through $1 is still in $2"
}

# unmounted_and_ended MOUNTPOINT PID: `umount MOUNTPOINT` ends the daemon.
unmounted_and_ended() {
    umount "$1" || fail "umount $1 failed"
    not_mounted "$1" || fail "$1 still mounted after umount"
    wait_pid_exit "$2" 10 || fail "diofs (pid $2) still runs 10 s after umount $1"
}

# kernel_options MOUNTPOINT: the options the kernel holds for the mount (not mount(8)'s utab).
kernel_options() { findmnt -n -o VFS-OPTIONS,FS-OPTIONS --mountpoint "$1" | tr -s ' ' ','; }

# in_namespace NAME SCRIPT ARGS...: run the bash SCRIPT in a private mount namespace, after
# a prelude that gives it tmp=$1, say, bad, and a cleanup that lazily unmounts what it lists in
# `mounts`. Before anything else the prelude lazily detaches the namespace's copies of other
# people's FUSE mounts: a copy would pin their file system (its daemon would not see its own
# umount) for as long as this namespace lives.
namespace_prelude=$(cat <<'PRELUDE'
set -euo pipefail
tmp=$1
mounts=()
say() { printf 'mount_command_test (%s): %s\n' "$0" "$*"; }
bad() { say "FAIL: $*" >&2; exit 1; }
cleanup() {
    local status=$? m
    for m in "${mounts[@]}"; do
        mountpoint -q "$m" && umount -l "$m"
    done
    exit $status
}
trap cleanup EXIT
while read -r target fstype; do
    target=$(printf '%b' "$target")
    case $target in "$tmp"/*) continue ;; esac
    umount -l -c "$target" 2>/dev/null || true
done < <(findmnt -rn -o TARGET,FSTYPE | awk '$2 ~ /^fuse/')
PRELUDE
)
in_namespace() {
    local name=$1 script=$2
    shift 2
    timeout 30 unshare -m --propagation private bash -c "$namespace_prelude"$'\n'"$script" "$name" "$@"
}

no_mount_left() {
    local left
    left=$(mountinfo_mentioning "$E2E_TMP")
    [[ -z "$left" ]] || fail "$1 left a mount behind: $left"
}

# --- mount -t fuse.diofs ---------------------------------------------------------------------
track_mount "$mnt"
status=0
mount -t fuse.diofs "$src" "$mnt" -o dbopt >"$E2E_TMP/first-mount.out" 2>"$E2E_TMP/err" || status=$?
assert_eq 0 "$status" "exit status of mount -t fuse.diofs SRC MNT -o dbopt; stderr: $(cat "$E2E_TMP/err")"
# Checked at the very end, so that a noisy mount does not hide the other results.
cat "$E2E_TMP/err" >>"$E2E_TMP/first-mount.out"
is_mounted "$mnt" || fail "mount returned 0 but $mnt is not mounted"
findmnt -t fuse.diofs "$mnt" >/dev/null || fail "findmnt -t fuse.diofs $mnt finds nothing"
assert_eq "$src fuse.diofs" "$(findmnt -n -o SOURCE,FSTYPE --mountpoint "$mnt" | tr -s ' ')" \
    "findmnt SOURCE and FSTYPE of $mnt"
the_daemon "$mnt"
passes_through "$mnt" "$src"
# The daemon forked into the background: it still keeps the kernel's pages of a file being
# read to the window (the default cache_window, 1 MiB: 256 pages), and drops them at close.
head -c 32M /dev/urandom >"$src/big"
status=0
window=$(python3 "$(dirname "$0")/kernel_window.py" "$mnt/big" 4096) || status=$?
((status != 77)) || skip "no cachestat(2) here"
assert_eq 0 "$status" "exit status of kernel_window.py"
read -r _ peak _ after _ bytes <<<"$window"
assert_eq $((32 << 20)) "$bytes" "bytes read through the daemonized mount ($window)"
((peak > 0 && peak <= 256)) || fail "pages of a file being read: at most $peak, not 1-256 ($window)"
assert_eq 0 "$after" "pages left after the close ($window)"
# ... and waits for locks: a blocking flock(1) waits for its holder and then has the lock
# (what waits is started in the daemon's background process, not left in the parent).
: >"$mnt/locked"
flock -x "$mnt/locked" -c "touch '$E2E_TMP/held'; sleep 1" &
holder=$!
for _ in $(seq 100); do [[ -e $E2E_TMP/held ]] && break; sleep 0.1; done
[[ -e $E2E_TMP/held ]] || fail "flock(1) did not take the lock through the daemonized mount"
status=0
timeout 30 flock -x "$mnt/locked" -c true || status=$?
wait "$holder"
assert_eq 0 "$status" "exit status of a blocking flock(1) while another holds the lock (124: it never got it)"
unmounted_and_ended "$mnt" "$DAEMON_PID"
ok "mount -t fuse.diofs SRC MNT -o dbopt; findmnt; files pass; a reader's pages stay in the window ($window); a blocking flock waits and gets the lock; umount ends the daemon"

# --- refused mounts --------------------------------------------------------------------------
refused_mount() {  # NEEDLE MOUNT-ARGS...
    local needle=$1 status=0 err
    shift
    timeout 20 mount "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err" || status=$?
    err=$(cat "$E2E_TMP/out" "$E2E_TMP/err")
    for p in $(daemon_pids_with_arg "$mnt"); do track_pid "$p"; done
    [[ $status != 0 ]] || fail "mount $* succeeded"
    [[ $status != 124 ]] || fail "mount $* did not return within 20 s"
    assert_contains "$err" "$needle" "message of: mount $*"
    no_mount_left "mount $*"
    [[ -z "$(daemon_pids_with_arg "$mnt")" ]] || fail "mount $* left a diofs daemon running"
    ok "refused: mount $* (status $status, says '$needle')"
}
refused_mount bogus_option -t fuse.diofs "$src" "$mnt" -o dbopt,bogus_option
refused_mount log_level -t fuse.diofs "$src" "$mnt" -o log_level=loud
refused_mount "$E2E_TMP/no-such-source" -t fuse.diofs "$E2E_TMP/no-such-source" "$mnt" -o dbopt

# --- fstab lines -----------------------------------------------------------------------------
mnt2=$E2E_TMP/mnt-ro
mkdir "$mnt2"
cat >"$E2E_TMP/fstab" <<EOF
# an alternative fstab for mount -T
$src $mnt fuse.diofs dbopt,nofail,_netdev,x-systemd.automount 0 0
$src	$mnt2	fuse.diofs	defaults,ro,noatime,comment=diofs-e2e	0	0
EOF
track_mount "$mnt"
status=0
mount -T "$E2E_TMP/fstab" "$mnt" 2>"$E2E_TMP/err" || status=$?
assert_eq 0 "$status" "exit status of mount -T fstab $mnt; stderr: $(cat "$E2E_TMP/err")"
findmnt -t fuse.diofs "$mnt" >/dev/null || fail "findmnt -t fuse.diofs $mnt finds nothing after mount -T"
options=$(kernel_options "$mnt")
for word in nofail _netdev x-systemd dbopt; do
    assert_not_contains "$options" "$word" "kernel mount options of the fstab mount $mnt"
done
line=$(mountinfo_mentioning "$mnt")
for word in nofail _netdev x-systemd dbopt; do
    assert_not_contains "$line" "$word" "/proc/self/mountinfo line of the fstab mount $mnt"
done
the_daemon "$mnt"
passes_through "$mnt" "$src"
ok "fstab: dbopt,nofail,_netdev,x-systemd.automount mounts; the kernel sees none of mount(8)'s words"

track_mount "$mnt2"
status=0
mount -T "$E2E_TMP/fstab" "$mnt2" 2>"$E2E_TMP/err" || status=$?
assert_eq 0 "$status" "exit status of mount -T fstab $mnt2; stderr: $(cat "$E2E_TMP/err")"
options=$(kernel_options "$mnt2")
assert_contains ",$options," ",ro," "kernel options of the fstab mount with ro"
assert_contains ",$options," ",noatime," "kernel options of the fstab mount with noatime"
for word in defaults comment; do
    assert_not_contains "$options" "$word" "kernel options of the fstab mount $mnt2"
done
assert_eq "from the backing directory" "$(cat "$mnt2/hello")" "reading through the ro mount"
status=0
err=$( { echo nope >"$mnt2/refused"; } 2>&1) || status=$?
[[ $status != 0 ]] || fail "a file was created through the ro mount $mnt2"
assert_contains "$err" "Read-only file system" "error of a write through the ro mount"
rw_pid=$DAEMON_PID
the_daemon "$mnt2"
unmounted_and_ended "$mnt2" "$DAEMON_PID"
unmounted_and_ended "$mnt" "$rw_pid"
ok "fstab: defaults,ro,noatime,comment=... gives a read-only noatime mount; umount ends both"

# fstab escapes spaces as \040; the source also holds a comma.
odd_src="$E2E_TMP/source, with a comma"
odd_mnt="$E2E_TMP/mount point with spaces"
mkdir "$odd_src" "$odd_mnt"
echo "from the backing directory" >"$odd_src/hello"
printf '%s %s fuse.diofs dbopt,nofail 0 0\n' "${odd_src// /\\040}" "${odd_mnt// /\\040}" \
    >"$E2E_TMP/fstab-odd"
track_mount "$odd_mnt"
status=0
mount -T "$E2E_TMP/fstab-odd" "$odd_mnt" 2>"$E2E_TMP/err" || status=$?
assert_eq 0 "$status" \
    "exit status of mount -T (fstab: $(cat "$E2E_TMP/fstab-odd")); stderr: $(cat "$E2E_TMP/err")"
assert_eq "$odd_src" "$(findmnt -n -o SOURCE --mountpoint "$odd_mnt")" \
    "findmnt SOURCE of the fstab mount with spaces and a comma"
assert_eq fuse.diofs "$(findmnt -n -o FSTYPE --mountpoint "$odd_mnt")" \
    "findmnt FSTYPE of the fstab mount with spaces and a comma"
the_daemon "$odd_mnt"
passes_through "$odd_mnt" "$odd_src"
unmounted_and_ended "$odd_mnt" "$DAEMON_PID"
ok "fstab: \\040-escaped spaces and a comma in SOURCE and MOUNTPOINT"

# --- suid and dev ----------------------------------------------------------------------------
# mount(8) never hands its defaults to a helper: `-o suid,dev` reaches mount.fuse.diofs as
# `-o rw`, exactly as no option does. So the helper gives a mount suid and dev unless it was
# told nosuid/nodev, as mount.fuse3 does, and as mount(8) mounts every other filesystem; the
# diofs command itself keeps FUSE's nosuid,nodev unless suid/dev are given.
cp /usr/bin/id "$src/setuid-id"
chown root:root "$src/setuid-id"
chmod 4755 "$src/setuid-id"
mknod -m 0666 "$src/null-device" c 1 3  # /dev/null's
nobody_uid=$(id -u nobody)

# suid_dev_of MOUNTPOINT: "nosuid" or "suid", then "nodev" or "dev", as the kernel holds the
# mount (the per-mount options of /proc/self/mountinfo).
suid_dev_of() {
    local o
    o=,$(findmnt -n -o VFS-OPTIONS --mountpoint "$1"),
    [[ $o == *,nosuid,* ]] && printf nosuid, || printf suid,
    [[ $o == *,nodev,* ]] && printf nodev || printf dev
}

# honoured MOUNTPOINT: the same, as programs see it: "suid" when the setuid-root copy of id(1)
# that nobody runs from the mount gets euid 0 ("nosuid": nobody's), "dev" when the device
# node opens (nodev: EACCES).
honoured() {
    local euid
    euid=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$1/setuid-id" -u)
    case $euid in
        0) printf suid, ;;
        "$nobody_uid") printf nosuid, ;;
        *) fail "the setuid-root id -u run by nobody from $1 printed '$euid'" ;;
    esac
    { : >"$1/null-device"; } 2>/dev/null && printf dev || printf nodev
}

# mounted_with EXPECTED MOUNT-ARGS...: `mount MOUNT-ARGS` mounts $mnt EXPECTED ("suid,dev",
# "nosuid,nodev", ...) in /proc/self/mountinfo and for the programs that use it, and umount
# ends the daemon.
mounted_with() {
    local expected=$1 status=0
    shift
    track_mount "$mnt"
    mount "$@" 2>"$E2E_TMP/err" || status=$?
    assert_eq 0 "$status" "exit status of mount $*; stderr: $(cat "$E2E_TMP/err")"
    assert_eq fuse.diofs "$(mount_fstype "$mnt")" "type of the mount made by mount $*"
    assert_eq "$expected" "$(suid_dev_of "$mnt")" "mountinfo of the mount made by mount $*"
    assert_eq "$expected" "$(honoured "$mnt")" "what programs see of the mount made by mount $*"
    the_daemon "$mnt"
    unmounted_and_ended "$mnt" "$DAEMON_PID"
    ok "mount $*: $expected, in mountinfo and for a setuid-root program and a device node"
}
mounted_with suid,dev -t fuse.diofs "$src" "$mnt" -o suid,dev
mounted_with nosuid,nodev -t fuse.diofs "$src" "$mnt" -o nosuid,nodev
mounted_with suid,dev -t fuse.diofs "$src" "$mnt"
mounted_with nosuid,dev -t fuse.diofs "$src" "$mnt" -o dbopt,nosuid
mounted_with suid,nodev -t fuse.diofs "$src" "$mnt" -o nodev,dbopt
cat >"$E2E_TMP/fstab-suid" <<EOF
$src $mnt fuse.diofs suid,dbopt,nofail 0 0
EOF
mounted_with suid,dev -T "$E2E_TMP/fstab-suid" "$mnt"
cat >"$E2E_TMP/fstab-nosuid" <<EOF
$src $mnt fuse.diofs defaults,nosuid,nodev 0 0
EOF
mounted_with nosuid,nodev -T "$E2E_TMP/fstab-nosuid" "$mnt"

# The diofs command, not through mount(8): FUSE's default, unless suid/dev are given.
for given_expected in ":nosuid,nodev" "suid,dev:suid,dev"; do
    given=${given_expected%%:*} expected=${given_expected#*:}
    diofs_mount "$src" "$mnt" "$given"
    assert_eq "$expected" "$(suid_dev_of "$mnt")" "mountinfo of diofs SRC MNT -o $given"
    assert_eq "$expected" "$(honoured "$mnt")" "what programs see of diofs SRC MNT -o $given"
    diofs_unmount "$mnt" "$DIOFS_PID"
done
ok "diofs SRC MNT: nosuid,nodev; diofs SRC MNT -o suid,dev: suid,dev"
rm "$src/setuid-id" "$src/null-device"

# A `user` fstab line mounted by a user who is not root stays nosuid,nodev (and noexec), even
# where it asks for suid,dev: mount(8) tells the helper nosuid,nodev,noexec, and fusermount3
# refuses suid and dev to a user. In a private mount namespace, where /etc/fstab is a file of
# the test's and /dev/fuse a node that every user may open (as Debian's udev rule makes it;
# where it is 0600, as on this test's VM, no user could mount at all).
mkdir -m 0700 "$E2E_TMP/dev"
mknod -m 0666 "$E2E_TMP/dev/fuse" c 10 229
for m in user-mnt user-suid-mnt; do
    mkdir "$E2E_TMP/$m"
    chown nobody "$E2E_TMP/$m"
done
cat >"$E2E_TMP/fstab-user" <<EOF
$src $E2E_TMP/user-mnt fuse.diofs user,dbopt 0 0
$src $E2E_TMP/user-suid-mnt fuse.diofs user,suid,dev 0 0
EOF
inner=$(cat <<'INNER'
mounts=("$tmp/user-mnt" "$tmp/user-suid-mnt")
mount --bind "$tmp/fstab-user" /etc/fstab
mount --bind "$tmp/dev/fuse" /dev/fuse
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
for m in "${mounts[@]}"; do
    as_nobody mount "$m" || bad "nobody: mount $m (a user line of fstab) failed"
    [[ $(as_nobody cat "$m/hello") == "from the backing directory" ]] || bad "reading through $m"
    o=,$(findmnt -n -o VFS-OPTIONS --mountpoint "$m"),
    for flag in nosuid nodev noexec; do
        [[ $o == *,$flag,* ]] || bad "the user mount $m is not $flag: $o"
    done
    as_nobody umount "$m" || bad "nobody: umount $m failed"
    say "nobody mounts $m ($(grep -F " $m " "$tmp/fstab-user" | cut -d' ' -f4)): $o"
done
INNER
)
status=0
in_namespace "user mount" "$inner" "$E2E_TMP" || status=$?
assert_eq 0 "$status" "exit status of the user mount test in a private mount namespace"
no_daemon_serves() { [[ -z "$(daemon_pids_with_arg "$1")" ]]; }
for m in user-mnt user-suid-mnt; do
    wait_until 10 no_daemon_serves "$E2E_TMP/$m" ||
        fail "the user's diofs for $m still runs 10 s after its umount"
done
ok "fstab user lines mounted by nobody: nosuid,nodev,noexec, also where the line says suid,dev"

# --- umount -a -t fuse.diofs, in a private mount namespace -----------------------------------
mkdir "$E2E_TMP/ns-a" "$E2E_TMP/ns-b"
# The prelude has detached the namespace's copies of other people's FUSE mounts: `umount -a`
# must find ours only.
inner=$(cat <<'INNER'
src=$2
mounts=("$tmp/ns-a" "$tmp/ns-b")
pids_of() {  # the diofs serving $1
    local pid
    for pid in $(pgrep -x diofs); do
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -Fxq -- "$1" && echo "$pid"
    done
    return 0
}
pids=()
for m in "${mounts[@]}"; do
    mount -t fuse.diofs "$src" "$m" -o dbopt || bad "mount -t fuse.diofs $src $m failed"
    [[ $(findmnt -n -o FSTYPE --mountpoint "$m") == fuse.diofs ]] || bad "$m is not a diofs mount"
    [[ $(cat "$m/hello") == "from the backing directory" ]] || bad "reading through $m"
    p=$(pids_of "$m")
    [[ -n $p ]] || bad "no diofs daemon serves $m"
    pids+=($p)
done
[[ ${#pids[@]} == 2 ]] || bad "expected 2 daemons, got: ${pids[*]}"
umount -a -t fuse.diofs || bad "umount -a -t fuse.diofs exited with $?"
for m in "${mounts[@]}"; do
    ! mountpoint -q "$m" || bad "$m is still mounted after umount -a -t fuse.diofs"
done
[[ -z $(findmnt -rn -t fuse.diofs) ]] || bad "diofs mounts left: $(findmnt -rn -t fuse.diofs)"
alive() { local st; st=$(ps -o stat= -p "$1") && [[ $st != Z* ]]; }  # zombies are gone
for p in "${pids[@]}"; do
    for _ in $(seq 200); do
        alive "$p" || break
        sleep 0.05
    done
    ! alive "$p" || bad "diofs (pid $p) still runs 10 s after umount -a"
done
say "two mounts, umount -a -t fuse.diofs: both gone, daemons ${pids[*]} exited"
INNER
)
status=0
in_namespace namespace "$inner" "$E2E_TMP" "$src" || status=$?
assert_eq 0 "$status" "exit status of the umount -a test in a private mount namespace"
no_mount_left "the namespace test (in this namespace)"
for m in "$E2E_TMP/ns-a" "$E2E_TMP/ns-b"; do
    [[ -z "$(daemon_pids_with_arg "$m")" ]] || fail "a diofs daemon for $m outlives its namespace test"
done
ok "umount -a -t fuse.diofs (private mount namespace) unmounts both and ends their daemons"

no_mount_left "the whole test"

# mount(8) is silent when it succeeds (the daemon's own log goes to syslog once it detaches).
assert_eq "" "$(cat "$E2E_TMP/first-mount.out")" \
    "what a successful mount -t fuse.diofs SRC MNT -o dbopt prints"
ok "a successful mount prints nothing"

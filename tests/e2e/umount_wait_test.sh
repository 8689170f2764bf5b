#!/bin/bash
# umount returns once the daemon has let go of the backing directory (umount.fuse.diofs, and
# the lock each daemon holds in /run/diofs while it lives): `umount MNT && umount BACKING`, with
# BACKING a loop-device ext4 under the mount's source, succeeds 50 times in a row
# (DIOFS_UMOUNT_ROUNDS: tests/run.sh's quick tier runs 10); without the helper (`umount -i`) the
# same is only counted (20 times, or as many rounds), as information: it is a race. Also: a mount
# whose daemon was killed (-9) unmounts at once; `umount -l` returns without waiting; `umount -f`
# and `umount -c` of a stopped daemon give up after DIOFS_UMOUNT_WAIT seconds with a warning, and
# succeed; a plain `umount` of a stopped daemon, which waits in umount(8)'s own stat(2) of the
# mount point, goes on through the helper once the FUSE connection is aborted (fusectl), as the
# documentation says; a mount point named with a space, tab, newline and backslash is waited
# for too; the lock file and mount(8)'s utab entry are gone after each unmount.
# Needs `cmake --install build`: mount(8) and umount(8) find only /sbin's helpers, which run
# the installed diofs, not $DIOFS_BINARY.

E2E_TIMEOUT=${E2E_TIMEOUT:-330}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

require_installed /sbin/mount.fuse.diofs /sbin/umount.fuse.diofs
require_tools mkfs.ext4 flock findmnt

backing=$E2E_TMP/backing
mnt=$E2E_TMP/mnt
mkdir "$mnt"
e2e_loop_fs ext4 "$backing" 256
loop=$E2E_LOOP
mkdir "$backing/src"
# Every file the kernel has looked up holds a descriptor in the daemon, which it closes when its
# mount is gone: 2000 of them widen the moment in which the backing is still busy.
mkdir "$backing/src/many"
(cd "$backing/src/many" && seq 2000 | xargs touch)

# mount_diofs [MOUNTPOINT]: mount the backing's src on MOUNTPOINT (default $mnt) through
# mount(8), and set DEVICE (MAJOR:MINOR of the mount), LOCK (its lock file) and DAEMON_PID.
mount_diofs() {
    local where=${1:-$mnt}
    track_mount "$where"
    mount -t fuse.diofs "$backing/src" "$where" -o dbopt || fail "mount -t fuse.diofs failed"
    DEVICE=$(M=$(e2e_mountinfo_escape "$where") awk '$5 == ENVIRON["M"] { d = $3 } END { print d }' \
        /proc/self/mountinfo)
    LOCK=/run/diofs/$DEVICE.lock
    # By its source: pgrep does not see a mount point's newline or tab as itself. One daemon
    # at a time serves it here.
    the_daemon "$backing/src"
}

# use_it ROUND: write a file through the mount, and look up 2000 more.
use_it() {
    dd if=/dev/urandom of="$mnt/file$1" bs=64K count=40 status=none conv=fsync ||
        fail "dd through the mount failed (round $1)"
    ls -l "$mnt/many" >/dev/null || fail "ls -l through the mount failed (round $1)"
}

# mount_backing: mount the loop device on $backing again.
mount_backing() { mount -t ext4 "$loop" "$backing" || fail "mount $loop $backing failed"; }

# lock_let_go: the daemon DAEMON_PID's lock file is gone. The device number of an unmounted
# mount is free at once, and the next mount (of a test running beside this one) takes the lowest
# free number and makes its own lock file there: a file of that name with another PID in it is
# that mount's, not a leftover.
lock_let_go() {
    local holder
    holder=$(cat "$LOCK" 2>/dev/null) || return 0
    [[ $holder != "$DAEMON_PID" ]]
}

utab_mentions() { [[ -s /run/mount/utab ]] && grep -Fq -- "TARGET=$mnt " /run/mount/utab; }

# --- the lock and the utab entry -----------------------------------------------------------
mount_diofs
[[ -f "$LOCK" ]] || fail "no lock file $LOCK for the mount ($DEVICE)"
assert_eq "$DAEMON_PID" "$(cat "$LOCK")" "the PID in $LOCK"
flock -n -s "$LOCK" true && fail "$LOCK is not locked while the daemon runs"
utab_mentions || fail "mount(8) left no utab entry for $mnt (umount would not call its helper)"
assert_contains "$(grep -F -- "TARGET=$mnt " /run/mount/utab)" "uhelper=fuse.diofs" "utab entry"
ok "the daemon holds $LOCK with its PID; utab names the umount helper"
umount "$mnt" || fail "umount $mnt failed"
pid_gone "$DAEMON_PID" || fail "the daemon (pid $DAEMON_PID) still runs when umount returned"
lock_let_go || fail "$LOCK is still there after the daemon exited"
utab_mentions && fail "the utab entry for $mnt is still there after umount"
ok "umount returned after the daemon exited; lock file and utab entry are gone"

# --- umount MNT && umount BACKING, 50 times --------------------------------------------------
rounds=${DIOFS_UMOUNT_ROUNDS:-50}
for ((i = 1; i <= rounds; i++)); do
    mount_diofs
    use_it "$i"
    if ! umount "$mnt"; then
        fail "round $i: umount $mnt failed"
    fi
    if ! umount "$backing"; then
        fail "round $i: umount $backing failed right after umount $mnt (the daemon had not let go?)"
    fi
    pid_gone "$DAEMON_PID" || fail "round $i: the daemon still runs after both unmounts"
    mount_backing
done
ok "umount MNT && umount BACKING: $rounds of $rounds succeeded"

# --- the same without the helper: information only -----------------------------------------
busy=0
unhelped=$((rounds < 20 ? rounds : 20))
for ((i = 1; i <= unhelped; i++)); do
    mount_diofs
    use_it "$i"
    umount -i "$mnt" || fail "umount -i $mnt failed"
    if ! umount "$backing" 2>/dev/null; then
        busy=$((busy + 1))
        wait_until 10 pid_gone "$DAEMON_PID" || fail "the daemon still runs 10 s after umount -i"
        umount "$backing" || fail "umount $backing failed after the daemon exited"
    fi
    wait_until 10 pid_gone "$DAEMON_PID" || fail "the daemon still runs 10 s after umount -i"
    mount_backing
done
note "information: without the helper (umount -i), umount BACKING found it busy $busy times of $unhelped"

# --- a dead daemon ---------------------------------------------------------------------------
mount_diofs
kill -KILL "$DAEMON_PID"
wait_until 5 pid_gone "$DAEMON_PID" || fail "the daemon survives SIGKILL"
start=$SECONDS
timeout 20 umount "$mnt" || fail "umount of a mount whose daemon was killed failed"
((SECONDS - start <= 2)) || fail "umount of a mount whose daemon was killed took $((SECONDS - start)) s"
not_mounted "$mnt" || fail "$mnt is still mounted"
umount "$backing" || fail "umount $backing failed after the dead mount's umount"
mount_backing
ok "a mount whose daemon was killed unmounts at once (the lock went with the process)"

# --- umount -l ---------------------------------------------------------------------------------
mount_diofs
exec {held}<"$mnt/file1"  # keeps the mount in use: the lazy unmount must not wait for it
start=$SECONDS
umount -l "$mnt" || fail "umount -l $mnt failed"
((SECONDS - start <= 2)) || fail "umount -l took $((SECONDS - start)) s"
not_mounted "$mnt" || fail "$mnt is still mounted after umount -l"
pid_alive "$DAEMON_PID" || fail "the daemon ended while its lazily detached mount is in use"
exec {held}<&-
wait_until 10 pid_gone "$DAEMON_PID" || fail "the daemon still runs 10 s after the last user left"
ok "umount -l returns at once; the daemon ends when the last user is gone"

# --- a stopped daemon: the wait is bounded -----------------------------------------------------
mount_diofs
stop_daemon "$DAEMON_PID" "$mnt"
start=$SECONDS
err=$(DIOFS_UMOUNT_WAIT=2 timeout 30 umount -f "$mnt" 2>&1) || fail "umount -f of a stopped daemon failed: $err"
resume_daemon "$DAEMON_PID"
((SECONDS - start <= 6)) || fail "umount -f of a stopped daemon took $((SECONDS - start)) s"
assert_contains "$err" "has not exited after 2 s" "umount's warning about the stopped daemon"
not_mounted "$mnt" || fail "$mnt is still mounted after umount -f"
wait_until 10 pid_gone "$DAEMON_PID" || fail "the daemon still runs 10 s after SIGCONT"
ok "a stopped daemon: umount -f warns after DIOFS_UMOUNT_WAIT and succeeds ($err)"

# --- a stopped daemon, umount -c: what the documentation says to use ---------------------------
mount_diofs
ls "$mnt" >/dev/null  # the root's attributes are no longer in the kernel's cache (atime)
stop_daemon "$DAEMON_PID" "$mnt"
err=$(DIOFS_UMOUNT_WAIT=2 timeout 30 umount -c "$mnt" 2>&1) || fail "umount -c of a stopped daemon failed: $err"
resume_daemon "$DAEMON_PID"
assert_contains "$err" "has not exited after 2 s" "umount -c's warning about the stopped daemon"
not_mounted "$mnt" || fail "$mnt is still mounted after umount -c"
wait_until 10 pid_gone "$DAEMON_PID" || fail "the daemon still runs 10 s after SIGCONT"
ok "a stopped daemon: umount -c warns after DIOFS_UMOUNT_WAIT and succeeds"

# --- a stopped daemon, plain umount ---------------------------------------------------------------
# umount(8) of util-linux 2.38 stat()s the mount point before it looks for a helper: the kernel
# asks the daemon (unless it still holds the root's attributes, which a listing of the root
# undoes), and a stopped daemon never answers, so DIOFS_UMOUNT_WAIT cannot apply. What the
# documentation says to do then: abort the connection (fusectl); umount(8) goes on through the
# helper, which unmounts and waits DIOFS_UMOUNT_WAIT for the daemon.
# umount_state PID: "ended", "waiting" (in the kernel, for an answer of a FUSE daemon), or "".
umount_state() {
    local child
    pid_alive "$1" || { echo ended; return; }
    for child in $(pgrep -P "$1" -x umount || true); do
        if [[ $(cat "/proc/$child/wchan" 2>/dev/null) == request_wait_answer ]]; then
            echo waiting
            return
        fi
    done
    return 0
}
umount_settled() { [[ -n $(umount_state "$1") ]]; }
mount_diofs
ls "$mnt" >/dev/null
stop_daemon "$DAEMON_PID" "$mnt"
DIOFS_UMOUNT_WAIT=2 timeout 120 umount "$mnt" 2>"$E2E_TMP/umount.err" &
umounting=$!
wait_until 60 umount_settled "$umounting" || fail "umount $mnt neither ended nor waits for the daemon"
if [[ $(umount_state "$umounting") == waiting ]]; then
    note "as documented: plain umount waits for the stopped daemon's answer to its stat(2) of $mnt"
    fuse_abort_connection "$DEVICE" || fail "cannot abort the FUSE connection of $mnt ($DEVICE)"
else
    note "information: plain umount did not wait for the stopped daemon (util-linux newer than 2.38?)"
fi
wait_until 60 pid_gone "$umounting" ||
    fail "umount $mnt still runs 60 s after its connection was aborted"
status=0
wait "$umounting" || status=$?
err=$(cat "$E2E_TMP/umount.err")
assert_eq 0 "$status" "exit status of umount $mnt (stopped daemon, connection aborted); stderr: $err"
assert_contains "$err" "has not exited after 2 s" "the helper's warning about the stopped daemon"
not_mounted "$mnt" || fail "$mnt is still mounted after umount"
resume_daemon "$DAEMON_PID"
wait_until 10 pid_gone "$DAEMON_PID" || fail "the daemon still runs 10 s after SIGCONT"
ok "a stopped daemon: plain umount goes on through the helper once the connection is aborted"

# --- a mount point whose name mountinfo escapes ---------------------------------------------------
# mountinfo writes space, tab, newline and backslash as \040 \011 \012 \134; umount(8) gives the
# helper the name unescaped. The helper must still find the mount's device, and so wait.
odd="$E2E_TMP/odd name"$'\t''tab'$'\n''newline\backslash'
mkdir "$odd"
mount_diofs "$odd"
err=$(timeout 60 umount -v "$odd" 2>&1) || fail "umount of the oddly named mount point failed: $err"
assert_contains "$err" "waiting for diofs (pid $DAEMON_PID) to exit" \
    "umount -v of the oddly named mount point"
pid_gone "$DAEMON_PID" ||
    fail "the daemon (pid $DAEMON_PID) still runs when umount of the oddly named mount returned"
lock_let_go || fail "$LOCK is still there after the daemon exited"
not_mounted "$odd" || fail "the oddly named mount point is still mounted"
ok "a mount point named with a space, a tab, a newline and a backslash: umount waits for the daemon"

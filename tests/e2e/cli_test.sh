#!/bin/bash
# The command line of the daemon: every bad input is refused with a message that names the
# bad thing, exit status 1 and no mount; --help and --version; how a foreground and a
# daemonized diofs end (SIGTERM, SIGINT, umount).

E2E_TIMEOUT=${E2E_TIMEOUT:-45}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

src=$E2E_TMP/backing
mnt=$E2E_TMP/mnt
mkdir "$src" "$mnt"
echo "through the mount" >"$src/hello"
printf 'not a directory\n' >"$E2E_TMP/regular-file"

# --- bad input -------------------------------------------------------------------------------
refused "bogus_option" -- "$src" "$mnt" -o bogus_option
refused "bogus_option" -- "$src" "$mnt" -o dbopt,bogus_option=3
refused "bogus_option" -- "$src" "$mnt" -obogus_option
refused "--no-such-flag" -- "$src" "$mnt" --no-such-flag
refused "loud" -- "$src" "$mnt" -o log_level=loud
refused "log_level" -- "$src" "$mnt" -o log_level=loud
refused "log_level" -- "$src" "$mnt" -o log_level
refused "dbopt" -- "$src" "$mnt" -o dbopt=1
refused "allow_other" -- "$src" "$mnt" -o allow_other=yes
refused "fsname" -- "$src" "$mnt" -o fsname=
refused "fsname" -- "$src" "$mnt" -o "fsname=a b"
refused "-o" -- "$src" "$mnt" -o
refused "SOURCE" -- # nothing at all
refused "SOURCE" -- -o dbopt
refused "MOUNTPOINT" -- "$src"
refused "$E2E_TMP/regular-file" -- "$E2E_TMP/regular-file" "$mnt"
refused "$E2E_TMP/no-such-source" -- "$E2E_TMP/no-such-source" "$mnt"
refused "$E2E_TMP/no-such-mountpoint" -- "$src" "$E2E_TMP/no-such-mountpoint"
refused "$E2E_TMP/regular-file" -- "$src" "$E2E_TMP/regular-file"
refused "$E2E_TMP/extra" -- "$src" "$mnt" "$E2E_TMP/extra"
assert_eq "through the mount" "$(cat "$src/hello")" "the backing file after all the refusals"

# --- --help and --version --------------------------------------------------------------------
for flag in --help -h; do
    status=0
    "$DIOFS_BINARY" "$flag" >"$E2E_TMP/out" 2>"$E2E_TMP/err" || status=$?
    assert_eq 0 "$status" "exit status of diofs $flag"
    assert_contains "$(cat "$E2E_TMP/out")" "usage: diofs SOURCE MOUNTPOINT" "stdout of diofs $flag"
    assert_contains "$(cat "$E2E_TMP/out")" "dbopt" "stdout of diofs $flag"
done
ok "--help and -h exit 0 with the usage"
for flag in --version -V; do
    status=0
    "$DIOFS_BINARY" "$flag" >"$E2E_TMP/out" 2>"$E2E_TMP/err" || status=$?
    assert_eq 0 "$status" "exit status of diofs $flag"
    [[ $(cat "$E2E_TMP/out") =~ ^diofs\ [0-9]+\.[0-9]+ ]] ||
        fail "diofs $flag: expected 'diofs X.Y...', got: $(cat "$E2E_TMP/out")"
done
ok "--version and -V exit 0 with the version"
no_mount_left "--help and --version"

# --- a foreground daemon ends on SIGTERM, SIGINT and umount, with status 0 -------------------
for sig in TERM INT; do
    diofs_mount "$src" "$mnt" dbopt
    assert_eq "through the mount" "$(cat "$mnt/hello")" "a file read through the mount"
    kill -s "$sig" "$DIOFS_PID"
    wait_pid_exit "$DIOFS_PID" 10 || fail "diofs -f still runs 10 s after SIG$sig"
    assert_eq 0 "$E2E_STATUS" "exit status of diofs -f after SIG$sig"
    not_mounted "$mnt" || fail "$mnt is still mounted after SIG$sig ended the daemon"
    ok "SIG$sig ends a foreground diofs with status 0 and unmounts"
done

diofs_mount "$src" "$mnt" dbopt
diofs_unmount "$mnt" "$DIOFS_PID"
ok "umount ends a foreground diofs with status 0"

# Paths with a comma (libfuse splits its -o at commas) and spaces (escaped in mountinfo).
odd_src="$E2E_TMP/source, with a comma"
odd_mnt="$E2E_TMP/mount point with spaces"
mkdir "$odd_src" "$odd_mnt"
echo odd >"$odd_src/file"
diofs_mount "$odd_src" "$odd_mnt" dbopt
assert_eq "$odd_src" "$(findmnt -n -o SOURCE --mountpoint "$odd_mnt")" "the source shown for a path with a comma"
assert_eq odd "$(cat "$odd_mnt/file")" "a file read through a mount point with spaces"
diofs_unmount "$odd_mnt" "$DIOFS_PID"
ok "SOURCE with a comma and MOUNTPOINT with spaces"

# The fsname is the mount's source, which the kernel takes up to PATH_MAX with its NUL: 4095
# bytes mount, one more would fail in libfuse with a bare EINVAL.
longest=$(head -c 4095 /dev/zero | tr '\0' f)
refused "fsname:" "4096 bytes" "4095" -- "$src" "$mnt" -o "dbopt,fsname=${longest}f"
diofs_mount "$src" "$mnt" "fsname=$longest"
assert_eq "$longest" "$(findmnt -n -o SOURCE --mountpoint "$mnt")" "the source shown for a 4095-byte fsname"
diofs_unmount "$mnt" "$DIOFS_PID"
ok "fsname: 4095 bytes mount, 4096 are refused by name"

# Without fsname=, the source is SOURCE's absolute path: one longer than the kernel takes (a
# relative SOURCE deep down) is refused with a message that says to give a shorter fsname=.
component=$(head -c 200 /dev/zero | tr '\0' d)
mkdir "$E2E_TMP/deep"
cd "$E2E_TMP/deep"
while ((${#PWD} <= 4095)); do
    mkdir "$component"
    cd "$component"
done
echo deep >file
refused "SOURCE '.'" "fsname=" -- . "$mnt"
diofs_mount . "$mnt" fsname=deep-source
assert_eq deep-source "$(findmnt -n -o SOURCE --mountpoint "$mnt")" "the source shown with fsname=deep-source"
assert_eq deep "$(cat "$mnt/file")" "a file read through the mount of a deep SOURCE"
diofs_unmount "$mnt" "$DIOFS_PID"
cd "$E2E_TMP"
ok "a SOURCE whose absolute path is longer than 4095 bytes: refused, naming fsname=; mounts with one"

# A busy mount: umount fails, and the daemon keeps serving.
diofs_mount "$src" "$mnt"
exec {busy}<"$mnt/hello"
(cd "$mnt" && ! umount "$mnt" 2>/dev/null) || fail "umount of a busy mount succeeded"
pid_alive "$DIOFS_PID" || fail "a failed umount (busy) ended the daemon"
assert_eq "through the mount" "$(cat "$mnt/hello")" "a file read after a failed umount"
exec {busy}<&-
diofs_unmount "$mnt" "$DIOFS_PID"
ok "a refused umount (busy) leaves the daemon serving"

# --- the daemonized diofs (no -f) ------------------------------------------------------------
daemonized() {  # SOURCE MOUNTPOINT [ARGS...]: run diofs without -f; it must return 0 mounted
    local status=0
    track_mount "$2"
    "$DIOFS_BINARY" "$@" >"$E2E_TMP/out" 2>"$E2E_TMP/err" || status=$?
    assert_eq 0 "$status" "exit status of diofs $* (daemonized); stderr: $(cat "$E2E_TMP/err")"
    # Once it detaches it logs to syslog; a successful start says nothing.
    assert_eq "" "$(cat "$E2E_TMP/out" "$E2E_TMP/err")" "what a successful daemonized diofs $* prints"
}

daemonized "$src" "$mnt" -o dbopt
# No waiting: the mount exists when the command returns.
is_mounted "$mnt" || fail "diofs returned 0 but $mnt is not mounted yet"
assert_eq fuse.diofs "$(mount_fstype "$mnt")" "type of the mount on $mnt"
mapfile -t pids < <(daemon_pids_with_arg "$mnt")
assert_eq 1 "${#pids[@]}" "number of diofs daemons serving $mnt (pids: ${pids[*]:-none})"
pid=${pids[0]}
track_pid "$pid"
assert_eq "through the mount" "$(cat "$mnt/hello")" "a file read through the daemonized mount"
echo "written through the daemon" >"$mnt/written"
assert_eq "written through the daemon" "$(cat "$src/written")" "a file written through the daemonized mount"
umount "$mnt"
wait_pid_exit "$pid" 10 || fail "the daemonized diofs (pid $pid) still runs 10 s after umount"
not_mounted "$mnt" || fail "$mnt still mounted after umount"
ok "daemonized: returns 0 once mounted, umount ends the daemon"

daemonized "$src" "$mnt"
mapfile -t pids < <(daemon_pids_with_arg "$mnt")
assert_eq 1 "${#pids[@]}" "number of diofs daemons serving $mnt (pids: ${pids[*]:-none})"
pid=${pids[0]}
track_pid "$pid"
kill -TERM "$pid"
wait_pid_exit "$pid" 10 || fail "the daemonized diofs (pid $pid) still runs 10 s after SIGTERM"
not_mounted "$mnt" || fail "$mnt still mounted after SIGTERM ended the daemon"
ok "daemonized: SIGTERM ends the daemon and unmounts"

# Relative SOURCE and MOUNTPOINT: the daemon leaves its working directory, so it must make
# them absolute (the kernel shows the source, umount needs the mount point).
tag=$(basename "$E2E_TMP")
mkdir "$E2E_TMP/src-$tag" "$E2E_TMP/mnt-$tag"
echo relative >"$E2E_TMP/src-$tag/file"
track_mount "$E2E_TMP/mnt-$tag"
status=0
(cd "$E2E_TMP" && "$DIOFS_BINARY" "src-$tag" "mnt-$tag" >"$E2E_TMP/out" 2>"$E2E_TMP/err") || status=$?
assert_eq 0 "$status" "exit status of diofs with relative paths; stderr: $(cat "$E2E_TMP/err")"
is_mounted "$E2E_TMP/mnt-$tag" || fail "relative MOUNTPOINT: $E2E_TMP/mnt-$tag is not mounted"
mapfile -t pids < <(daemon_pids_with_arg "mnt-$tag")
assert_eq 1 "${#pids[@]}" "number of diofs daemons for mnt-$tag (pids: ${pids[*]:-none})"
track_pid "${pids[0]}"
source_shown=$(findmnt -n -o SOURCE --mountpoint "$E2E_TMP/mnt-$tag")
assert_eq "$E2E_TMP/src-$tag" "$source_shown" "the source shown for a relative SOURCE"
assert_eq relative "$(cat "$E2E_TMP/mnt-$tag/file")" "a file read through a relative mount"
umount "$E2E_TMP/mnt-$tag"
wait_pid_exit "${pids[0]}" 10 || fail "diofs (relative paths) still runs 10 s after umount"
ok "daemonized with relative paths: absolute source shown, umount ends it"

no_mount_left "the whole test"

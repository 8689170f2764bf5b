#!/bin/bash
# No user can make the daemon wait on itself. A mount inside its own backing directory would
# send every lookup of its mount point back into the mount: each lookup waits for a worker
# thread that is itself waiting, until none is left, and then umount hangs and kill -9 leaves
# a zombie. So diofs refuses such a mount at start (also when the backing directory is reached
# through a bind mount), and a loop made later (root bind-mounting the mount point back into
# the backing directory) makes the lookups that would re-enter the mount fail with EDEADLK,
# at once, for any user, while the daemon keeps serving everything else.
#
# A hung step must not leave a wedged mount behind: every step that reaches the mount runs
# with a deadline, and past it the test aborts the FUSE connection (fusectl's abort file, the
# only thing that frees a wedged daemon) before it fails. The mount is never stat'ed for that:
# its device number comes from /proc/self/mountinfo.

E2E_TIMEOUT=${E2E_TIMEOUT:-100}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

command -v setpriv >/dev/null || skip "setpriv is not installed"
getent passwd nobody >/dev/null || skip "there is no user nobody"
nogroup=$(id -gn nobody)

src=$E2E_TMP/backing
mnt=$E2E_TMP/mnt
mkdir "$src" "$mnt"
echo "through the mount" >"$src/hello"
mkdir "$src/dir"
echo "inside" >"$src/dir/file"

# connection_of MOUNTPOINT: the FUSE connection number (the minor of the mount's device), from
# mountinfo: asking the mount itself could hang.
connection_of() {
    local want
    want=$(e2e_mountinfo_escape "$1")
    M=$want awk '$5 == ENVIRON["M"] { split($3, d, ":"); n = d[2] } END { print n }' \
        /proc/self/mountinfo
}

CONNECTION=""  # the connection of the mount under test, aborted when a step hangs

# abort_connection: free whatever waits on the mount under test, through fusectl's abort file
# (fusectl mounted on a directory of our own when the system has not mounted it).
abort_connection() {
    [[ -n "$CONNECTION" ]] || return 0
    local fusectl=/sys/fs/fuse/connections
    if [[ ! -e "$fusectl/$CONNECTION/abort" ]]; then
        fusectl=$E2E_TMP/fusectl
        mkdir -p "$fusectl"
        track_mount "$fusectl"
        mount -t fusectl fusectl "$fusectl" || true
    fi
    note "aborting FUSE connection $CONNECTION"
    echo 1 >"$fusectl/$CONNECTION/abort" || note "cannot abort FUSE connection $CONNECTION"
}

# bounded SECONDS PID...: wait for the processes (children of this shell) to end. Past the
# deadline the connection is aborted (which ends them) and the test fails.
bounded() {
    local seconds=$1 pid
    shift
    if ! wait_until "$seconds" all_gone "$@"; then
        abort_connection
        for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
        fail "still running after $seconds s: the daemon waited on itself (connection aborted)"
    fi
}
all_gone() {
    local pid
    for pid in "$@"; do pid_gone "$pid" || return 1; done
}

# run_bounded SECONDS OUTPUT COMMAND...: run COMMAND with a deadline, its stdout and stderr in
# OUTPUT; sets STATUS to its exit status.
run_bounded() {
    local seconds=$1 output=$2 pid
    shift 2
    "$@" >"$output" 2>&1 &
    pid=$!
    bounded "$seconds" "$pid"
    STATUS=0
    wait "$pid" || STATUS=$?
}

as_nobody() { setpriv --reuid=nobody --regid="$nogroup" --clear-groups -- "$@"; }

# --- refused at start ------------------------------------------------------------------------
# refused() looks for what it must not find on $mnt.
mnt_saved=$mnt
mkdir "$src/m" "$src/dir/deeper"
mnt=$src/m
refused "is inside SOURCE" "'$src/m'" "'$src'" -- "$src" "$src/m"
mnt=$src/dir/deeper
refused "is inside SOURCE" -- "$src" "$src/dir/deeper"

# SOURCE reached through a bind mount of it elsewhere: the same loop, whatever the path says.
other=$E2E_TMP/other
mkdir "$other"
track_mount "$other"
mount --bind "$src" "$other"
E2E_KEPT_MOUNTS=("$other")
mnt=$other/m
refused "is inside SOURCE" "'$other/m'" "through '$other'" -- "$src" "$other/m"
mnt=$mnt_saved
E2E_KEPT_MOUNTS=()
umount "$other"

# Mounting over SOURCE itself is harmless: the daemon holds the directory it hides.
diofs_mount "$src" "$src"
CONNECTION=$(connection_of "$src")
run_bounded 10 "$E2E_TMP/out" cat "$src/hello"
assert_eq 0 "$STATUS" "exit status of cat through a mount over its own SOURCE"
assert_eq "through the mount" "$(cat "$E2E_TMP/out")" "a file read through a mount over its own SOURCE"
assert_eq fuse.diofs "$(mount_fstype "$src")" "type of the mount over SOURCE"
diofs_unmount "$src" "$DIOFS_PID"
ok "SOURCE == MOUNTPOINT: mounts and serves"

# SOURCE inside MOUNTPOINT is harmless too: the mount hides SOURCE from others, not from the
# daemon.
outer=$E2E_TMP/outer
mkdir -p "$outer/src"
echo "from inside" >"$outer/src/file"
diofs_mount "$outer/src" "$outer"
CONNECTION=$(connection_of "$outer")
run_bounded 10 "$E2E_TMP/out" cat "$outer/file"
assert_eq "from inside" "$(cat "$E2E_TMP/out")" "a file read through a mount over the parent of its SOURCE"
diofs_unmount "$outer" "$DIOFS_PID"
ok "SOURCE inside MOUNTPOINT: mounts and serves"
CONNECTION=""

# --- a loop made at run time -----------------------------------------------------------------
# Root bind-mounts the mount (its root, a directory in it, a file in it) back into the backing
# directory; then several users' commands at once walk into the loop.
loop_at_run_time() {
    local options=$1 start pid i n
    local what=${options:-default options}
    diofs_mount "$src" "$mnt" "$options"
    local daemon=$DIOFS_PID log=$DIOFS_LOG logged
    logged=$(wc -l <"$log")
    CONNECTION=$(connection_of "$mnt")
    [[ -n "$CONNECTION" ]] || fail "no device number for $mnt in /proc/self/mountinfo"
    mkdir -p "$src/loop" "$src/dir-loop"
    : >"$src/file-loop"
    track_mount "$src/loop"
    mount --bind "$mnt" "$src/loop"
    track_mount "$src/dir-loop"
    mount --bind "$mnt/dir" "$src/dir-loop"
    track_mount "$src/file-loop"
    mount --bind "$mnt/hello" "$src/file-loop"

    # Several at once, more than the daemon has worker threads.
    local commands=(
        "ls -R $mnt"
        "ls -R $mnt"
        "find $mnt"
        "stat $mnt/loop"
        "stat $mnt/loop/loop/hello"
        "ls $src/loop/loop"
        "stat $mnt/dir-loop"
        "cat $mnt/file-loop"
        "du -s $mnt"
        "ls -lR $src/loop"
    )
    local pids=()
    start=${EPOCHREALTIME/./}
    for i in "${!commands[@]}"; do
        # shellcheck disable=SC2086  # each command is split into its words on purpose
        as_nobody ${commands[i]} >"$E2E_TMP/loop-$i.out" 2>&1 &
        pids+=($!)
    done
    bounded 10 "${pids[@]}"
    local took=$(((${EPOCHREALTIME/./} - start) / 1000))
    for i in "${!commands[@]}"; do
        STATUS=0
        wait "${pids[i]}" || STATUS=$?
        [[ $STATUS != 0 ]] || fail "${commands[i]} (as nobody, $what) succeeded through the loop"
        assert_contains "$(cat "$E2E_TMP/loop-$i.out")" "Resource deadlock avoided" \
            "what ${commands[i]} (as nobody, $what) says"
    done
    ok "$what: ${#commands[@]} commands into the loop, at once as nobody, fail with EDEADLK within ${took} ms"

    # Everything that does not re-enter the mount still works, through both paths.
    run_bounded 10 "$E2E_TMP/out" as_nobody cat "$mnt/hello" "$mnt/dir/file" "$src/loop/hello"
    assert_eq 0 "$STATUS" "exit status of cat beside the loop ($what): $(cat "$E2E_TMP/out")"
    assert_eq $'through the mount\ninside\nthrough the mount' "$(cat "$E2E_TMP/out")" \
        "files read beside the loop ($what)"
    run_bounded 10 "$E2E_TMP/out" sh -c "echo new >'$mnt/dir/new' && cat '$src/dir/new'"
    assert_eq new "$(cat "$E2E_TMP/out")" "a file written beside the loop ($what)"
    n=$(tail -n +"$((logged + 1))" "$log" | grep -c "leads back into this mount" || true)
    assert_eq 1 "$n" "warnings about the loop in the log ($what)"
    ok "$what: the daemon keeps serving beside the loop, and warns once"

    local loops=("$src/file-loop" "$src/dir-loop" "$src/loop")
    for i in "${loops[@]}"; do
        run_bounded 10 "$E2E_TMP/out" umount "$i"
        assert_eq 0 "$STATUS" "umount $i ($what): $(cat "$E2E_TMP/out")"
    done
    run_bounded 10 "$E2E_TMP/out" umount "$mnt"
    assert_eq 0 "$STATUS" "umount $mnt ($what): $(cat "$E2E_TMP/out")"
    wait_pid_exit "$daemon" 10 || fail "diofs still runs 10 s after umount ($what)"
    assert_eq 0 "$E2E_STATUS" "exit status of diofs after umount ($what)"
    CONNECTION=""
    rmdir "$src/loop" "$src/dir-loop"
    rm "$src/file-loop"
    ok "$what: umount works and the daemon exits 0"
}

loop_at_run_time ""
loop_at_run_time dbopt
# One worker thread: any request the daemon made to its own mount would wedge it at once.
loop_at_run_time max_threads=1

no_mount_left "the whole test"

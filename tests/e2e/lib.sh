# shellcheck shell=bash
# Shared by the end-to-end tests: source it, do not run it.
#
#   source "$(dirname "$0")/lib.sh"
#
# It sets `set -euo pipefail`, makes a private temporary directory ($E2E_TMP), and installs an
# EXIT trap that undoes everything the test did through these helpers, also when the test
# fails half-way: it unmounts only the mounts the test made, stops only the daemons the test
# started, detaches only the loop devices it attached, deletes only the users and groups it
# created, and removes $E2E_TMP.
#
# Environment:
#   DIOFS_BINARY  the daemon under test (ctest passes $<TARGET_FILE:diofs>; when unset, the
#                 build/diofs of this repository)
#   CI=true       a test that cannot run (no /dev/fuse, not root, ...) fails instead of
#                 skipping: in CI a skipped mount test hides a broken runner.
#   E2E_TIMEOUT   seconds after which a watchdog kills the test's daemons (which makes any
#                 request hung in them fail) and ends the test, which then cleans up as for
#                 any failure. Keep it below the ctest TIMEOUT, which kills without cleanup.
#                 Default 120; a script may set its own before sourcing this file.
#
# Exit status: 0 pass, 1 fail, 77 skip (ctest's SKIP_RETURN_CODE).

set -euo pipefail
set -E  # the ERR trap also fires in functions and subshells

E2E_NAME=$(basename "${0%.sh}")
E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_REPO=$(git -C "$E2E_LIB_DIR" rev-parse --show-toplevel 2>/dev/null || (cd "$E2E_LIB_DIR/../.." && pwd))

E2E_TMP=""
E2E_MOUNTS=()   # mountpoints this test mounted (or tried to)
E2E_PIDS=()     # daemons (and other processes) this test started
E2E_LOOPS=()    # loop devices this test attached
E2E_USERS=()    # users this test created
E2E_GROUPS=()   # groups this test created
E2E_CLEANING=0
E2E_WATCHDOG=""

# ---------------------------------------------------------------------------------------------
# Reporting

note() { printf '%s: %s\n' "$E2E_NAME" "$*"; }
ok() { printf '%s: ok - %s\n' "$E2E_NAME" "$*"; }

fail() {
    printf '%s: FAIL: %s\n' "$E2E_NAME" "$*" >&2
    exit 1
}

# skip REASON: the test cannot run here. Exit 77 (ctest: skipped), but 1 when CI=true.
skip() {
    if [[ "${CI:-}" == true ]]; then
        printf '%s: FAIL (a skip is a failure in CI): %s\n' "$E2E_NAME" "$*" >&2
        exit 1
    fi
    printf '%s: SKIP: %s\n' "$E2E_NAME" "$*" >&2
    exit 77
}

e2e_on_err() {
    local status=$1 line=$2 command=$3
    ((E2E_CLEANING)) && return 0
    # shellcheck disable=SC2016  # the backquotes are text
    printf '%s: FAIL: line %s: `%s` exited with %s\n' "$E2E_NAME" "$line" "$command" "$status" >&2
}
trap 'e2e_on_err $? $LINENO "$BASH_COMMAND"' ERR

# assert_eq EXPECTED GOT WHAT
assert_eq() {
    if [[ "$1" != "$2" ]]; then
        printf "%s: FAIL: %s\n  expected: '%s'\n  got:      '%s'\n" "$E2E_NAME" "$3" "$1" "$2" >&2
        exit 1
    fi
}

# assert_contains TEXT NEEDLE WHAT: the fixed string NEEDLE occurs in TEXT.
assert_contains() {
    if [[ "$1" != *"$2"* ]]; then
        printf '%s: FAIL: %s\n  expected to contain: %s\n  got: %s\n' "$E2E_NAME" "$3" "$2" \
            "${1:-<empty>}" >&2
        exit 1
    fi
}

# assert_not_contains TEXT NEEDLE WHAT
assert_not_contains() {
    if [[ "$1" == *"$2"* ]]; then
        printf '%s: FAIL: %s\n  expected not to contain: %s\n  got: %s\n' "$E2E_NAME" "$3" "$2" \
            "$1" >&2
        exit 1
    fi
}

# assert_same_files EXPECTED_FILE GOT_FILE WHAT: byte-identical, else a diff of both.
assert_same_files() {
    if ! cmp -s -- "$1" "$2"; then
        printf '%s: FAIL: %s\n  expected: %s\n  got:      %s\n' "$E2E_NAME" "$3" "$1" "$2" >&2
        diff -u -- "$1" "$2" | head -n 40 >&2 || true
        exit 1
    fi
}

# ---------------------------------------------------------------------------------------------
# Mounts and processes

# The mount point field of /proc/self/mountinfo escapes space, tab, newline and backslash.
# (The escaped text goes to awk through ENVIRON: awk -v would undo the escapes.)
e2e_mountinfo_escape() {
    local p=$1
    p=${p//\\/\\134}
    p=${p// /\\040}
    p=${p//$'\t'/\\011}
    p=${p//$'\n'/\\012}
    printf '%s' "$p"
}

# is_mounted PATH: something is mounted exactly on PATH (in this mount namespace).
is_mounted() {
    local want
    want=$(e2e_mountinfo_escape "$1")
    M=$want awk '$5 == ENVIRON["M"] { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# mount_fstype PATH: the file system type of the (topmost) mount on PATH, e.g. fuse.diofs.
mount_fstype() {
    local want
    want=$(e2e_mountinfo_escape "$1")
    M=$want awk '$5 == ENVIRON["M"] { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); break } }
                 END { print t }' /proc/self/mountinfo
}

# mountinfo_mentioning TEXT: the lines of /proc/self/mountinfo that contain TEXT.
mountinfo_mentioning() { grep -F -- "$(e2e_mountinfo_escape "$1")" /proc/self/mountinfo || true; }

# mounts_under DIR: the mount points strictly inside DIR, one a line (unescaped).
mounts_under() {
    local prefix m
    prefix=$(e2e_mountinfo_escape "$1")/
    P=$prefix awk 'index($5, ENVIRON["P"]) == 1 { print $5 }' /proc/self/mountinfo |
        while IFS= read -r m; do
            printf '%b\n' "$(printf '%s' "$m" | sed 's/\\\([0-7][0-7][0-7]\)/\\0\1/g')"
        done
}

# pid_alive PID: the process exists and is not a zombie waiting to be reaped.
pid_alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z* ]]
}

# wait_until SECONDS COMMAND...: poll COMMAND every 50 ms until it succeeds; 1 on timeout.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    while ! "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

not_mounted() { ! is_mounted "$1"; }
pid_gone() { ! pid_alive "$1"; }

# wait_pid_exit PID SECONDS: wait for the process to end (for our children, also reap it and
# put its exit status in $E2E_STATUS). 1 on timeout.
wait_pid_exit() {
    local pid=$1 timeout=${2:-10}
    E2E_STATUS=""
    wait_until "$timeout" pid_gone "$pid" || return 1
    if wait "$pid" 2>/dev/null; then
        E2E_STATUS=0
    else
        E2E_STATUS=$?
        # 127: not a child of this shell (a daemon that forked): no status to collect.
        [[ $E2E_STATUS == 127 ]] && E2E_STATUS=""
    fi
    return 0
}

# is_diofs_process PID: the process runs diofs (the installed one or $DIOFS_BINARY), and is
# not a zombie.
is_diofs_process() {
    local comm own
    comm=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
    own=$(basename "$DIOFS_BINARY")
    [[ $comm == diofs || $comm == "${own:0:15}" ]] && pid_alive "$1"
}

# daemon_pids_with_arg ARG: the PIDs of the running diofs daemons that were given ARG as one
# whole argument (for a path under $E2E_TMP: ours). Found with pgrep -f, then checked
# argument by argument, so that a longer path that contains ARG does not count.
daemon_pids_with_arg() {
    local arg=$1 pid
    for pid in $(pgrep -f -- "$(printf '%s' "$arg" | sed 's/[][\.*^$+?(){}|]/\\&/g')" || true); do
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        is_diofs_process "$pid" || continue
        if tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -Fxq -- "$arg"; then
            echo "$pid"
        fi
    done
    return 0
}

# our_leftover_daemons: diofs processes whose arguments name our temporary directory (by its
# unique random name, which relative paths also carry): started by this test, directly or
# through mount(8), a daemonizing diofs or a mount namespace, whatever their PID.
our_leftover_daemons() {
    [[ -n "$E2E_TMP" ]] || return 0
    local tag pid
    tag=$(basename "$E2E_TMP")
    for pid in $(pgrep -f -- "$(printf '%s' "$tag" | sed 's/[][\.*^$+?(){}|]/\\&/g')" || true); do
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        is_diofs_process "$pid" && echo "$pid"
    done
    return 0
}

# stop_daemon PID MOUNTPOINT: SIGSTOP a daemon the test started (a wedged daemon, for a test).
# Until resume_daemon PID, every request to it waits, and so would the cleanup's umount: the
# cleanup first aborts the connection of MOUNTPOINT's mount (found in mountinfo; the mount point
# is never stat'ed) and sends the daemon SIGCONT.
E2E_STOPPED=()  # "PID MAJOR:MINOR" of each daemon the test stopped
stop_daemon() {
    local pid=$1 device
    device=$(M=$(e2e_mountinfo_escape "$2") awk '$5 == ENVIRON["M"] { d = $3 } END { print d }' \
        /proc/self/mountinfo)
    [[ -n "$device" ]] || fail "stop_daemon: nothing is mounted on $2"
    E2E_STOPPED+=("$pid $device")
    kill -STOP "$pid"
}
resume_daemon() {
    local i
    kill -CONT "$1"
    for i in "${!E2E_STOPPED[@]}"; do
        [[ ${E2E_STOPPED[i]%% *} == "$1" ]] && unset 'E2E_STOPPED[i]'
    done
    return 0
}

# fuse_abort_connection MAJOR:MINOR: abort the FUSE connection of the mount with that device
# (fusectl's abort, mounted here if it is not): every request waiting for the daemon fails at
# once (ECONNABORTED), and the mount can be unmounted whatever its daemon does.
fuse_abort_connection() {
    local connections=/sys/fs/fuse/connections
    # Mounted by systemd at boot; left mounted when mounted here (another test may be using it).
    mountpoint -q "$connections" || mount -t fusectl none "$connections" || return 1
    [[ -e "$connections/${1#*:}/abort" ]] || return 1
    echo 1 >"$connections/${1#*:}/abort"
}

# track_mount PATH / track_pid PID: let the cleanup trap undo a mount or process the test
# caused by other means than diofs_mount (mount(8), the daemonized diofs...).
track_mount() { E2E_MOUNTS+=("$1"); }
track_pid() { E2E_PIDS+=("$1"); }

# diofs_mount SOURCE MOUNTPOINT [OPTIONS]: start "$DIOFS_BINARY SOURCE MOUNTPOINT -f -o OPTIONS"
# in the background, logging to (the end of) $E2E_TMP/<mountpoint's name>.log, and wait (10 s)
# until the mount is in /proc/self/mountinfo. Sets DIOFS_PID and DIOFS_LOG.
# SIGINT is reset to its default: a shell without job control starts background commands with
# SIGINT ignored, and libfuse leaves an ignored signal ignored.
diofs_mount() {
    local source=$1 mountpoint=$2 options=${3:-}
    local args=("$source" "$mountpoint" -f)
    [[ -n "$options" ]] && args+=(-o "$options")
    DIOFS_LOG="$E2E_TMP/$(basename "$mountpoint").log"
    E2E_MOUNTS+=("$mountpoint")
    env --default-signal=INT,QUIT "$DIOFS_BINARY" "${args[@]}" 2>>"$DIOFS_LOG" &
    DIOFS_PID=$!
    E2E_PIDS+=("$DIOFS_PID")
    local deadline=$((SECONDS + 10))
    until is_mounted "$mountpoint" && [[ $(mount_fstype "$mountpoint") == fuse.diofs ]]; do
        if ! pid_alive "$DIOFS_PID"; then
            local status=0
            wait "$DIOFS_PID" || status=$?
            printf '%s: FAIL: diofs %s exited with %s before mounting; its log:\n' \
                "$E2E_NAME" "${args[*]}" "$status" >&2
            sed 's/^/  | /' "$DIOFS_LOG" >&2
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            printf '%s: FAIL: diofs %s: no mount on %s after 10 s; its log:\n' \
                "$E2E_NAME" "${args[*]}" "$mountpoint" >&2
            sed 's/^/  | /' "$DIOFS_LOG" >&2
            exit 1
        fi
        sleep 0.05
    done
}

# thread_states PID: where each thread of PID is (name, wchan, kernel stack), for a report on
# a daemon that does not exit.
thread_states() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '  %s %s [%s] %s\n' "${t##*/}" "$(cat "$t/comm" 2>/dev/null)" \
            "$(cat "$t/wchan" 2>/dev/null)" \
            "$(awk '{ printf "< %s ", $2 } NR == 8 { exit }' "$t/stack" 2>/dev/null)"
    done
}

# diofs_unmount MOUNTPOINT PID: umount, then the foreground daemon must exit 0 within 10 s
# and the mount must be gone.
diofs_unmount() {
    local mountpoint=$1 pid=$2
    umount "$mountpoint" || fail "umount $mountpoint failed"
    wait_pid_exit "$pid" 10 ||
        fail "diofs (pid $pid) still runs 10 s after umount $mountpoint; its threads:
$(thread_states "$pid")"
    assert_eq 0 "$E2E_STATUS" "exit status of diofs after umount $mountpoint"
    not_mounted "$mountpoint" || fail "$mountpoint is still mounted after umount"
}

# e2e_losetup FILE [losetup options...]: attach FILE to a free loop device, and set E2E_LOOP
# to it. (Not in $(...): the cleanup list must be updated in this shell.)
e2e_losetup() {
    local file=$1
    shift
    E2E_LOOP=$(losetup --find --show "$@" "$file")
    E2E_LOOPS+=("$E2E_LOOP")
}

# e2e_loop_fs FSTYPE MOUNTPOINT [SIZE_MIB [SECTOR_SIZE]]: a small real file system for the
# test: a sparse image in $E2E_TMP (default 1024 MiB), attached to a free loop device with the
# given logical sector size (default 4096) and direct I/O on the image (so that the image file
# itself does not fill the page cache), made into FSTYPE (xfs or ext4) and mounted on
# MOUNTPOINT (created if missing); ext2 is mounted by the ext4 driver, without extents, so
# without fallocate. Sets E2E_LOOP. The cleanup unmounts it and detaches only
# this loop device. Skips when the machine cannot do it (no mkfs, no loop devices).
e2e_loop_fs() {
    local fstype=$1 mountpoint=$2 size=${3:-1024} sector=${4:-4096}
    local image
    command -v losetup >/dev/null || skip "losetup is not installed"
    command -v "mkfs.$fstype" >/dev/null || skip "mkfs.$fstype is not installed"
    image=$(mktemp "$E2E_TMP/loop-$fstype-XXXXXX.img")
    truncate -s "${size}M" "$image"
    if ! E2E_LOOP=$(losetup --find --show --sector-size "$sector" --direct-io=on "$image" 2>&1); then
        skip "cannot attach a loop device with $sector-byte sectors: $E2E_LOOP"
    fi
    E2E_LOOPS+=("$E2E_LOOP")
    case $fstype in
        xfs) mkfs.xfs -q -f "$E2E_LOOP" >/dev/null ;;
        ext4) mkfs.ext4 -q -F "$E2E_LOOP" >/dev/null ;;
        ext2) mkfs.ext2 -q -F "$E2E_LOOP" >/dev/null ;;  # no extents: no fallocate
        *) fail "e2e_loop_fs: unsupported file system type '$fstype'" ;;
    esac
    mkdir -p "$mountpoint"
    E2E_MOUNTS+=("$mountpoint")
    mount -t "$fstype" "$E2E_LOOP" "$mountpoint"
}

# e2e_useradd: create a fresh user (no home directory, own primary group), and set E2E_USER
# to its name. (Not in $(...): the cleanup list must be updated in this shell.)
e2e_useradd() {
    local name="diofs-t$$" n=0
    while getent passwd "$name" >/dev/null || getent group "$name" >/dev/null; do
        n=$((n + 1))
        name="diofs-t$$-$n"
    done
    useradd --no-create-home --user-group --shell /bin/sh --comment "diofs e2e test" "$name"
    E2E_USERS+=("$name")
    # shellcheck disable=SC2034  # for the test that sourced this file
    E2E_USER=$name
}

# e2e_groupadd: create a fresh group, and set E2E_GROUP to its name.
e2e_groupadd() {
    local name="diofs-g$$" n=0
    while getent group "$name" >/dev/null; do
        n=$((n + 1))
        name="diofs-g$$-$n"
    done
    groupadd "$name"
    E2E_GROUPS+=("$name")
    # shellcheck disable=SC2034  # for the test that sourced this file
    E2E_GROUP=$name
}

# ---------------------------------------------------------------------------------------------
# Cleanup

# is_our_process PID: alive, and its arguments name our temporary directory. A recorded PID
# that fails this has ended and may have been reused by somebody else's process.
is_our_process() {
    pid_alive "$1" && [[ -n "$E2E_TMP" ]] &&
        tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -Fq -- "$(basename "$E2E_TMP")"
}

e2e_stop_pid() {
    local pid=$1
    is_our_process "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_until 5 pid_gone "$pid"; then
        note "cleanup: pid $pid ignored SIGTERM for 5 s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_until 5 pid_gone "$pid" || note "cleanup: pid $pid survives SIGKILL"
    fi
    wait "$pid" 2>/dev/null || true
}

e2e_unmount_quietly() {
    local mountpoint=$1 i
    for i in 1 2 3; do
        is_mounted "$mountpoint" || return 0
        umount "$mountpoint" 2>/dev/null || sleep 0.2
    done
    if is_mounted "$mountpoint"; then
        note "cleanup: $mountpoint is busy, detaching it lazily"
        umount -l "$mountpoint" 2>/dev/null || true
    fi
}

e2e_cleanup() {
    local status=$? i pid mountpoint
    cd / || true  # the test may have left its working directory inside a mount
    E2E_CLEANING=1
    set +e +u
    trap - ERR
    # Output to a reader that is gone (ctest killed, its pipe closed) fails instead of ending the
    # cleanup half-way.
    trap '' PIPE
    if [[ -n "$E2E_WATCHDOG" ]]; then
        kill -TERM "$E2E_WATCHDOG" 2>/dev/null
        wait "$E2E_WATCHDOG" 2>/dev/null
    fi
    if [[ $status != 0 && $status != 77 && -n "$E2E_TMP" ]]; then
        for log in "$E2E_TMP"/*.log; do
            [[ -s "$log" ]] || continue
            printf '%s: --- %s (last 20 lines) ---\n' "$E2E_NAME" "$log" >&2
            tail -n 20 "$log" | sed 's/^/  | /' >&2
        done
    fi
    # A daemon the test stopped would make the unmounts below wait for good.
    local stopped
    for stopped in "${E2E_STOPPED[@]}"; do
        fuse_abort_connection "${stopped#* }" 2>/dev/null ||
            note "cleanup: cannot abort the FUSE connection ${stopped#* }"
        is_our_process "${stopped%% *}" && kill -CONT "${stopped%% *}" 2>/dev/null
    done
    # Newest mount first: a mount may sit inside another one.
    for ((i = ${#E2E_MOUNTS[@]} - 1; i >= 0; i--)); do
        e2e_unmount_quietly "${E2E_MOUNTS[i]}"
    done
    for pid in "${E2E_PIDS[@]}"; do
        e2e_stop_pid "$pid"
    done
    # Daemons started indirectly (mount(8), a daemonized diofs, a private mount namespace)
    # that the test could not record.
    for pid in $(our_leftover_daemons); do
        note "cleanup: stopping leftover diofs pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
        e2e_stop_pid "$pid"
    done
    # A daemon that died leaves its mount behind ("Transport endpoint is not connected").
    for ((i = ${#E2E_MOUNTS[@]} - 1; i >= 0; i--)); do
        e2e_unmount_quietly "${E2E_MOUNTS[i]}"
    done
    # Mounts the test made without recording them: whatever is mounted inside our private
    # temporary directory, deepest first.
    if [[ -n "$E2E_TMP" ]]; then
        while read -r mountpoint; do
            note "cleanup: unmounting $mountpoint, which the test did not record"
            e2e_unmount_quietly "$mountpoint"
        done < <(mounts_under "$E2E_TMP" | sort -r)
    fi
    for ((i = ${#E2E_LOOPS[@]} - 1; i >= 0; i--)); do
        losetup -d "${E2E_LOOPS[i]}" 2>/dev/null || note "cleanup: cannot detach ${E2E_LOOPS[i]}"
    done
    for user in "${E2E_USERS[@]}"; do
        userdel "$user" 2>/dev/null || note "cleanup: cannot delete user $user"
        getent group "$user" >/dev/null && groupdel "$user" 2>/dev/null
    done
    for group in "${E2E_GROUPS[@]}"; do
        groupdel "$group" 2>/dev/null || note "cleanup: cannot delete group $group"
    done
    if [[ -n "$E2E_TMP" && -d "$E2E_TMP" ]]; then
        if [[ -n "$(mountinfo_mentioning "$E2E_TMP")" ]]; then
            note "cleanup: something is still mounted under $E2E_TMP; leaving it in place"
            [[ $status == 0 ]] && status=1
        else
            [[ -n "${E2E_KEEP_LOGS:-}" ]] && cp "$E2E_TMP"/*.log "$E2E_KEEP_LOGS"/ 2>/dev/null
            rm -rf --one-file-system -- "$E2E_TMP"
        fi
    fi
    exit "$status"
}
trap e2e_cleanup EXIT
# SIGTERM and SIGINT (Ctrl-C) also run the cleanup; SIGKILL (ctest's TIMEOUT) cannot, hence
# the watchdog below.
trap 'exit 143' TERM
trap 'exit 130' INT

# ---------------------------------------------------------------------------------------------
# Preconditions

[[ -e /dev/fuse ]] || skip "/dev/fuse does not exist"
[[ $(id -u) == 0 ]] || skip "the end-to-end tests run as root (they mount, and create users)"
if [[ -z "${DIOFS_BINARY:-}" ]]; then
    DIOFS_BINARY="$E2E_REPO/build/diofs"
fi
[[ -x "$DIOFS_BINARY" ]] || fail "DIOFS_BINARY=$DIOFS_BINARY is not an executable (build it first)"

E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/diofs-e2e-$E2E_NAME.XXXXXXXX")
# Other users (users_test) must be able to reach the mounts inside.
chmod 0755 "$E2E_TMP"

# The watchdog (see E2E_TIMEOUT). A hung daemon blocks the test's current command in the
# kernel, where no signal to the test reaches it: killing the daemons aborts the FUSE
# connection, the command fails, and the EXIT trap cleans up.
e2e_watchdog() {
    local seconds=$1 main=$2 sleeper pid
    set +e
    trap - ERR EXIT INT
    sleep "$seconds" >/dev/null 2>&1 &
    sleeper=$!
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    wait "$sleeper" || exit 0
    printf '%s: FAIL: still running after %s s (E2E_TIMEOUT): killing its daemons\n' \
        "$E2E_NAME" "$seconds" >&2
    kill -TERM "$main" 2>/dev/null  # the test exits (143) as soon as its command returns
    for pid in $(our_leftover_daemons); do
        kill -KILL "$pid" 2>/dev/null
    done
    sleep 5 >/dev/null 2>&1 &
    sleeper=$!
    wait "$sleeper" || exit 0
    # Still stuck (not in a request to our daemon): end the test's own child processes.
    for pid in $(pgrep -P "$main"); do
        [[ $pid == "$BASHPID" ]] || kill -TERM "$pid" 2>/dev/null
    done
}
e2e_watchdog "${E2E_TIMEOUT:-120}" "$$" &
E2E_WATCHDOG=$!

# --- shared by the tests -------------------------------------------------------------------

mkredo="$E2E_REPO/../shared/tools/mkredo.py"
# make_redo PATH SIZE [SEED]: the seed's redo-log-like file (or a stand-in when the tool is
# missing from this checkout).
make_redo() {
    local seed=${3:-1}
    if [[ -f "$mkredo" ]]; then
        python3 "$mkredo" "$1" "$2" "$seed"
    else
        python3 - "$1" "$2" "$seed" <<'EOF'
import random, sys
path, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
with open(path, "wb") as f:
    written, scn = 0, 1_000_000
    while written < size:
        lines = []
        for _ in range(4096):
            scn += rng.randint(1, 9)
            lines.append("SCN=%012d TXN=0x%06x op=%s data=%s\n" % (
                scn, rng.randint(0, 0xFFFFFF), rng.choice(["INSERT", "UPDATE", "COMMIT"]),
                rng.randbytes(8).hex()))
        chunk = "".join(lines).encode()[: size - written]
        f.write(chunk)
        written += len(chunk)
EOF
    fi
}

# require_tools TOOL...: skip unless every TOOL is on PATH.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || skip "$tool is not installed"
    done
}

# require_installed HELPER...: the installed diofs (`cmake --install build`) and the mount
# helpers that mount(8) and umount(8) find only in /sbin, which run the installed diofs, not
# $DIOFS_BINARY: skip without them, warn when the installed diofs is not $DIOFS_BINARY.
require_installed() {
    local installed helper
    installed=$(command -v diofs || true)
    [[ -n "$installed" ]] || skip "diofs is not installed: run cmake --install build"
    for helper in "$@"; do
        [[ -x "$helper" ]] || skip "$helper is not installed: run cmake --install build"
    done
    if ! cmp -s "$installed" "$DIOFS_BINARY"; then
        note "warning: $installed differs from $DIOFS_BINARY: testing the installed one (run cmake --install build)"
    fi
}

# the_daemon MOUNTPOINT: the PID of the one diofs serving MOUNTPOINT, in DAEMON_PID (tracked
# for cleanup). For mounts made through mount(8), whose daemon the test did not start itself.
the_daemon() {
    local pids
    mapfile -t pids < <(daemon_pids_with_arg "$1")
    assert_eq 1 "${#pids[@]}" "number of diofs daemons serving $1 (pids: ${pids[*]:-none})"
    track_pid "${pids[0]}"
    # shellcheck disable=SC2034  # for the test that sourced this file
    DAEMON_PID=${pids[0]}
}

# no_mount_left WHAT: nothing at all is mounted under our temporary directory, except on the
# mount points the test lists in E2E_KEPT_MOUNTS (mounts it keeps there on purpose).
E2E_KEPT_MOUNTS=()
no_mount_left() {
    local left kept
    left=$(mountinfo_mentioning "$E2E_TMP")
    for kept in "${E2E_KEPT_MOUNTS[@]}"; do
        left=$(M=$(e2e_mountinfo_escape "$kept") awk '$5 != ENVIRON["M"]' <<<"$left")
    done
    [[ -z "$left" ]] || fail "$1 left a mount behind: $left"
}

# refused NEEDLE... -- ARGS...: (uses the caller's $mnt) diofs ARGS must exit 1 without mounting, in the foreground (-f)
# and as a daemon, and say every NEEDLE (fixed strings) on stderr.
# shellcheck disable=SC2154  # $mnt is the calling test's mount point
refused() {
    local needles=()
    while [[ $1 != -- ]]; do
        needles+=("$1")
        shift
    done
    shift
    local mode status err needle
    for mode in foreground daemon; do
        local args=("$@")
        [[ $mode == foreground ]] && args=(-f "$@")
        status=0
        timeout 10 "$DIOFS_BINARY" "${args[@]}" >"$E2E_TMP/out" 2>"$E2E_TMP/err" || status=$?
        err=$(cat "$E2E_TMP/err")
        for p in $(daemon_pids_with_arg "$mnt"); do track_pid "$p"; done
        is_mounted "$mnt" && track_mount "$mnt"
        [[ $status != 124 ]] || fail "diofs ${args[*]} ($mode) did not exit within 10 s; stderr: $err"
        assert_eq 1 "$status" "exit status of: diofs ${args[*]} ($mode); stderr: $err"
        for needle in "${needles[@]}"; do
            assert_contains "$err" "$needle" "stderr of: diofs ${args[*]} ($mode)"
        done
        no_mount_left "diofs ${args[*]} ($mode)"
    done
    ok "refused: diofs $* (says: ${needles[*]})"
}

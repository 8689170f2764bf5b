# shellcheck shell=bash
# A private GlusterFS "cluster" for the cluster tests: source it, do not run it.
#
#   source "$(dirname "$0")/gluster_lib.sh"
#   gluster_start          # glusterd, a volume, two client mounts: $CLIENT_A and $CLIENT_B
#   node_mount A dbopt     # diofs on a client mount: $MNT_A (node_unmount A before the end)
#
# It sources tests/e2e/lib.sh (set -euo pipefail, $E2E_TMP, skip/fail/assert_*, the watchdog,
# diofs_mount) and needs root, glusterfs-server and glusterfs-client
# (mount_helpers/install-deps.sh), unshare and nsenter (util-linux), ss (iproute2).
#
# glusterd runs in a mount namespace of its own, in which /var/lib/glusterd, /run/gluster and
# /var/log/glusterfs are bind mounts of directories under $GL_DIR (inside $E2E_TMP): its
# working directory, the sockets and pid files of the bricks and every log stay there, also
# those glusterd names by fixed paths. It listens on a loopback address of its own
# (127.X.Y.1, port 24007), so that two runs do not meet; the gluster CLI runs inside that
# namespace too. The bricks are directories under $GL_DIR/bricks; the clients run in the
# foreground (`glusterfs -N`), in the test's mount namespace, logging to $GL_DIR/log.
#
# Teardown, on every exit (pass, fail, skip, watchdog): every diofs mount is unmounted and its
# daemon waited for (a FUSE umount returns before the daemon lets go of the client mount
# under it), then the client mounts, then the volume is stopped and deleted, and glusterd,
# the bricks and the clients are ended by their PIDs. A mount that does not answer has its
# FUSE connection aborted through fusectl. lib.sh's cleanup then removes $E2E_TMP.
#
# Environment: GL_BRICKS (1 or 2, default 2: a distributed volume over two bricks);
# GL_LEAVE_DEFAULT, for experiments: volume options of GL_VOLUME_OPTIONS left at gluster's
# default, and the word `client` for GL_CLIENT_OPTIONS (README.md says what fails then).

# shellcheck source=../e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

GL_DIR="$E2E_TMP/gluster"
GL_VOLUME=diofs-cluster
GL_HOST=""
GLUSTERD_PID=""
GL_CLIENT_PIDS=()       # glusterfs client processes, in mount order
GL_CLIENT_MOUNTS=()     # their mount points
GL_BRICK_PIDS=()
GL_VOLUME_STARTED=0
declare -A NODE_PID=()  # node (A, B) -> the PID of its diofs daemon, while mounted

# The volume options the tests set, and why (README.md): coherence across clients comes from
# the bricks, so no translator of a client may answer from what it kept.
GL_VOLUME_OPTIONS=(
    performance.stat-prefetch off   # md-cache: attributes kept 1 s (a stale size at open)
    performance.quick-read off      # small files' contents kept at lookup
    performance.io-cache off        # file contents kept
    performance.read-ahead off      # read ahead of the reader, kept
    performance.readdir-ahead off   # directory entries kept
    performance.open-behind off     # an open answered before the brick saw it
    performance.nl-cache off        # negative lookups kept
    performance.write-behind off    # a write returns before the brick has it
)
# The client's kernel side: no attribute or entry cached, and the pages of a file dropped at
# every open (glusterfs keeps them by default when the kernel can invalidate them itself,
# which it does only once the cached attributes have timed out).
GL_CLIENT_OPTIONS=(--attribute-timeout=0 --entry-timeout=0 --negative-timeout=0
    --fopen-keep-cache=off)

# gl_cli ARGS...: the gluster CLI, talking to our glusterd, inside its mount namespace.
gl_cli() {
    timeout 60 nsenter --mount --target "$GLUSTERD_PID" \
        gluster --mode=script --glusterd-sock="$GL_DIR/glusterd.socket" \
        --log-file="$GL_DIR/log/cli.log" "$@"
}

# gl_skip_with_log REASON LOG: skip (fail under CI=true), showing the end of LOG.
gl_skip_with_log() {
    [[ -s "$2" ]] && tail -n 15 "$2" | sed 's/^/  | /' >&2
    skip "$1"
}

# gl_pick_host: a loopback address no process listens on port 24007 of, in GL_HOST.
gl_pick_host() {
    local try
    for try in 1 2 3 4 5 6 7 8; do
        GL_HOST="127.$((2 + RANDOM % 250)).$((RANDOM % 256)).1"
        ss -Hltn "src $GL_HOST:24007" 2>/dev/null | grep -q . || return 0
    done
    skip "no free loopback address for glusterd after 8 tries"
}

# gluster_start: glusterd, a volume over GL_BRICKS bricks, started, and two client mounts of
# it, $CLIENT_A and $CLIENT_B. Skips when GlusterFS cannot run here.
gluster_start() {
    local cmd brick bricks=() n pidfile
    for cmd in glusterd gluster glusterfs glusterfsd unshare nsenter ss; do
        command -v "$cmd" >/dev/null ||
            skip "$cmd is not installed (mount_helpers/install-deps.sh installs it)"
    done
    mkdir -p "$GL_DIR"/{work,run,log,bricks}
    gl_pick_host
    note "glusterd on $GL_HOST, state in $GL_DIR"
    # shellcheck disable=SC2016  # expanded by the inner shell
    # The new namespace starts with a copy of every mount of this one, and a copy pins its
    # filesystem for as long as glusterd lives: the umount of a FUSE mount of a test running
    # beside this one would then not end its daemon (its connection stays open), nor free a
    # loop device under it. So the copies of FUSE mounts, of loop-device filesystems and of
    # whatever is mounted under /tmp and /var/tmp are detached first (lazily, never stat-ing a
    # mount: one may not answer).
    unshare --mount --propagation private -- bash -c '
        while read -r target fstype source; do
            target=$(printf "%b" "$target")
            case "$fstype:$source:$target" in
                fuse*:* | *:/dev/loop*:* | *:*:/tmp/* | *:*:/var/tmp/*)
                    umount -l -c "$target" 2>/dev/null || true ;;
            esac
        done < <(findmnt -rn -o TARGET,FSTYPE,SOURCE | sort -r)
        set -e
        mount --bind "$1/work" /var/lib/glusterd
        mount --bind "$1/run" /run/gluster
        mount --bind "$1/log" /var/log/glusterfs
        exec glusterd -N -p "$1/glusterd.pid" -l "$1/log/glusterd.log" \
            --xlator-option management.working-directory="$1/work" \
            --xlator-option management.run-directory="$1/run" \
            --xlator-option management.glusterd-sockfile="$1/glusterd.socket" \
            --xlator-option management.cluster-test-mode="$1/log" \
            --xlator-option management.transport.socket.bind-address="$2"
    ' gluster-ns "$GL_DIR" "$GL_HOST" >"$GL_DIR/log/glusterd.out" 2>&1 &
    GLUSTERD_PID=$!
    track_pid "$GLUSTERD_PID"
    if ! wait_until 30 gl_glusterd_answers; then
        pid_alive "$GLUSTERD_PID" || gl_skip_with_log "glusterd exited at start" "$GL_DIR/log/glusterd.out"
        gl_skip_with_log "glusterd does not answer after 30 s" "$GL_DIR/log/glusterd.log"
    fi
    for ((n = 1; n <= ${GL_BRICKS:-2}; n++)); do
        brick="$GL_DIR/bricks/b$n"
        mkdir -p "$brick"
        bricks+=("$GL_HOST:$brick")
    done
    # force: the bricks are on the root file system.
    gl_cli volume create "$GL_VOLUME" "${bricks[@]}" force >"$GL_DIR/log/create.out" 2>&1 ||
        gl_skip_with_log "gluster volume create failed" "$GL_DIR/log/create.out"
    for ((n = 0; n < ${#GL_VOLUME_OPTIONS[@]}; n += 2)); do
        [[ " ${GL_LEAVE_DEFAULT:-} " == *" ${GL_VOLUME_OPTIONS[n]} "* ]] && continue
        gl_cli volume set "$GL_VOLUME" "${GL_VOLUME_OPTIONS[n]}" "${GL_VOLUME_OPTIONS[n + 1]}" >/dev/null
    done
    GL_VOLUME_STARTED=1
    gl_cli volume start "$GL_VOLUME" >"$GL_DIR/log/start.out" 2>&1 ||
        gl_skip_with_log "gluster volume start failed" "$GL_DIR/log/start.out"
    for pidfile in "$GL_DIR"/run/vols/"$GL_VOLUME"/*.pid; do
        [[ -s "$pidfile" ]] && GL_BRICK_PIDS+=("$(cat "$pidfile")")
    done
    ((${#GL_BRICK_PIDS[@]} == ${GL_BRICKS:-2})) ||
        gl_skip_with_log "the volume started ${#GL_BRICK_PIDS[@]} of ${GL_BRICKS:-2} bricks" "$GL_DIR/log/glusterd.log"
    for n in "${GL_BRICK_PIDS[@]}"; do track_pid "$n"; done
    gl_client_mount a
    CLIENT_A=$GL_MOUNTED
    gl_client_mount b
    CLIENT_B=$GL_MOUNTED
    note "volume $GL_VOLUME: ${#GL_BRICK_PIDS[@]} brick(s), clients on $CLIENT_A and $CLIENT_B"
}

# gl_glusterd_answers: glusterd runs and its CLI socket answers.
gl_glusterd_answers() {
    pid_alive "$GLUSTERD_PID" && gl_cli volume list >/dev/null 2>&1
}

# gl_client_mount NAME: a glusterfs client of the volume on $GL_DIR/client-NAME, in the
# foreground (its PID is ours), in GL_MOUNTED once mounted.
gl_client_mount() {
    local mnt="$GL_DIR/client-$1" pid
    mkdir -p "$mnt"
    track_mount "$mnt"
    local options=("${GL_CLIENT_OPTIONS[@]}")
    [[ " ${GL_LEAVE_DEFAULT:-} " == *" client "* ]] && options=()
    glusterfs -N --volfile-server="$GL_HOST" --volfile-id="$GL_VOLUME" "${options[@]}" \
        -l "$GL_DIR/log/client-$1.log" -p "$GL_DIR/client-$1.pid" "$mnt" \
        >"$GL_DIR/log/client-$1.out" 2>&1 &
    pid=$!
    track_pid "$pid"
    GL_CLIENT_PIDS+=("$pid")
    GL_CLIENT_MOUNTS+=("$mnt")
    wait_until 30 gl_client_ready "$mnt" ||
        gl_skip_with_log "the glusterfs client $1 did not mount in 30 s" "$GL_DIR/log/client-$1.log"
    GL_MOUNTED=$mnt
}

# gl_client_ready MOUNTPOINT: a glusterfs client is mounted there and serves its root.
gl_client_ready() {
    [[ $(mount_fstype "$1") == fuse.glusterfs ]] && ls "$1" >/dev/null 2>&1
}

# node_mount NODE OPTIONS: diofs (-o OPTIONS) on the client mount of NODE (A or B), on
# $MNT_<NODE>; its log in $LOG_<NODE>.
node_mount() {
    local node=$1 client mnt
    client=CLIENT_$node
    mnt="$E2E_TMP/mnt-$node"
    mkdir -p "$mnt"
    diofs_mount "${!client}" "$mnt" "$2"
    NODE_PID[$node]=$DIOFS_PID
    printf -v "MNT_$node" '%s' "$mnt"
    printf -v "LOG_$node" '%s' "$DIOFS_LOG"
}

# node_unmount NODE: umount NODE's diofs mount, and its daemon exits 0 (lib.sh's
# diofs_unmount waits for it): only then is its client mount free.
node_unmount() {
    local mnt="$E2E_TMP/mnt-$1"
    diofs_unmount "$mnt" "${NODE_PID[$1]}"
    unset "NODE_PID[$1]"
}

# fuse_abort MOUNTPOINT: abort the FUSE connection of the mount (its minor device number,
# read from mountinfo, never by stat), mounting fusectl on $E2E_TMP/fusectl if the system
# has not: every request waiting in it fails, and it can be unmounted.
fuse_abort() {
    local want dev fusectl=/sys/fs/fuse/connections
    want=$(e2e_mountinfo_escape "$1")
    dev=$(M=$want awk '$5 == ENVIRON["M"] { d = $3 } END { print d }' /proc/self/mountinfo)
    [[ -n "$dev" ]] || return 0
    if [[ ! -e "$fusectl/${dev#*:}/abort" ]]; then
        fusectl=$E2E_TMP/fusectl
        if ! is_mounted "$fusectl"; then
            mkdir -p "$fusectl"
            mount -t fusectl fusectl "$fusectl" 2>/dev/null || return 0
        fi
    fi
    note "cleanup: aborting the FUSE connection of $1 ($dev)"
    echo 1 >"$fusectl/${dev#*:}/abort" 2>/dev/null || true
}

# gl_unmount_fuse MOUNTPOINT PID: unmount a FUSE mount and end its daemon PID; a mount that
# does not go (a daemon that does not answer) has its connection aborted first.
gl_unmount_fuse() {
    local mnt=$1 pid=$2
    if is_mounted "$mnt" && ! timeout 20 umount "$mnt" 2>/dev/null; then
        fuse_abort "$mnt"
        timeout 20 umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    fi
    wait_until 10 pid_gone "$pid" || e2e_stop_pid "$pid"
    wait "$pid" 2>/dev/null || true
}

# gluster_teardown: the diofs mounts and their daemons, the client mounts, the volume,
# glusterd and the bricks, in that order; each by what this test started.
gluster_teardown() {
    local node i pid
    for node in "${!NODE_PID[@]}"; do
        gl_unmount_fuse "$E2E_TMP/mnt-$node" "${NODE_PID[$node]}"
    done
    for ((i = ${#GL_CLIENT_MOUNTS[@]} - 1; i >= 0; i--)); do
        gl_unmount_fuse "${GL_CLIENT_MOUNTS[i]}" "${GL_CLIENT_PIDS[i]}"
    done
    if [[ -n "$GLUSTERD_PID" ]] && pid_alive "$GLUSTERD_PID"; then
        if ((GL_VOLUME_STARTED)); then
            gl_cli volume stop "$GL_VOLUME" force >/dev/null 2>&1 ||
                note "cleanup: gluster volume stop failed"
        fi
        gl_cli volume delete "$GL_VOLUME" >/dev/null 2>&1 ||
            note "cleanup: gluster volume delete failed"
    fi
    for pid in "${GL_BRICK_PIDS[@]}" "$GLUSTERD_PID"; do
        [[ -n "$pid" ]] && e2e_stop_pid "$pid"
    done
    # Anything else glusterd started for us (its arguments name our directory).
    for pid in $(pgrep -f -- "$(basename "$E2E_TMP")" || true); do
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        case $(cat "/proc/$pid/comm" 2>/dev/null) in
            glusterd | glusterfs | glusterfsd)
                note "cleanup: stopping leftover $(cat "/proc/$pid/comm") pid $pid"
                e2e_stop_pid "$pid"
                ;;
        esac
    done
}

# gl_on_exit: the EXIT trap: gluster_teardown, the script's gl_after_teardown if it has one
# (what it must undo once the cluster's processes are gone), then lib.sh's cleanup with the
# test's status.
gl_on_exit() {
    local status=$?
    E2E_CLEANING=1
    set +e +u
    trap - ERR
    cd / || true
    gluster_teardown
    if declare -F gl_after_teardown >/dev/null; then gl_after_teardown; fi
    (exit "$status")
    e2e_cleanup
}
trap gl_on_exit EXIT

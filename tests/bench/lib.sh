# shellcheck shell=bash
# Helpers shared by the measuring scripts of tests/bench (sourced, not run): cleanup of what a
# script made (mounts, daemons, its loop device, its work directory), page-cache meters
# (/proc/meminfo Cached, the memory cgroup's page cache, fincore), starting and stopping diofs,
# and medians. The sourcing script sets BENCH_NAME (for messages) and fills WORK, LOOP, MOUNTS
# and DAEMONS as it creates things, then calls install_cleanup.

die() { printf '%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2; exit 1; }

# DIOFS_BINARY, unless given: build/diofs of this repository when it was built, else diofs on
# $PATH (for the scripts that measure the working tree).
default_to_built_diofs() {
    if [[ -z "${DIOFS_BINARY:-}" ]]; then
        DIOFS_BINARY=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/diofs
        [[ -x $DIOFS_BINARY ]] || DIOFS_BINARY=$(command -v diofs || true)
    fi
}

# --- cleanup ---------------------------------------------------------------------------------
WORK=""
LOOP=""
MOUNTS=()    # mount points this script mounted, in order
DAEMONS=()   # diofs daemons this script started

is_mounted() { findmnt -n --mountpoint "$1" >/dev/null 2>&1; }

unmount_quietly() {
    local m=$1 i
    for i in 1 2 3 4 5; do
        is_mounted "$m" || return 0
        umount "$m" 2>/dev/null || sleep 0.3
    done
    is_mounted "$m" && { echo "cleanup: $m busy, detaching it lazily" >&2; umount -l "$m" || true; }
}

cleanup() {
    local status=$? i pid
    set +e
    trap - EXIT INT TERM
    cd /
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        unmount_quietly "${MOUNTS[i]}"
    done
    for pid in "${DAEMONS[@]}"; do
        # Only our daemons: still running diofs with our work directory in its arguments.
        if [[ -n "$WORK" ]] && tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -Fq -- "$WORK"; then
            kill -TERM "$pid" 2>/dev/null
            for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        unmount_quietly "${MOUNTS[i]}"
    done
    if [[ -n "$LOOP" ]]; then
        losetup -d "$LOOP" 2>/dev/null || echo "cleanup: cannot detach $LOOP" >&2
    fi
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if findmnt -rn -o TARGET | grep -Fq -- "$WORK"; then
            echo "cleanup: something is still mounted under $WORK; leaving it" >&2
        else
            rm -rf --one-file-system -- "$WORK"
        fi
    fi
    exit "$status"
}
# make_xfs4k_loop MIB: an xfs on a loop device with 4096-byte sectors (direct I/O on its image,
# $WORK/xfs4k.img of MIB MiB), mounted on $WORK/xfs4k; sets LOOP, which cleanup detaches.
make_xfs4k_loop() {
    local image=$WORK/xfs4k.img
    truncate -s "$1M" "$image"
    LOOP=$(losetup --find --show --sector-size 4096 --direct-io=on "$image")
    mkfs.xfs -q -f "$LOOP" >/dev/null
    mkdir "$WORK/xfs4k"
    MOUNTS+=("$WORK/xfs4k")
    mount -t xfs "$LOOP" "$WORK/xfs4k"
}

install_cleanup() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# --- helpers ---------------------------------------------------------------------------------
cached_kib() { awk '$1 == "Cached:" { print $2 }' /proc/meminfo; }

# The page cache charged to the memory cgroup this script (and the daemons it starts) runs in:
# unlike Cached, work in other cgroups does not move it. Empty when there is none to read
# (cgroup v1: memory.stat total_cache; v2: memory.stat file; both in bytes).
CGROUP_STAT=""
CGROUP_KEY=""
cgroup_v1=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' /proc/self/cgroup)
cgroup_v2=$(awk -F: '$1 == 0 && $2 == "" { print $3 }' /proc/self/cgroup)
if [[ -n "$cgroup_v1" && -r "/sys/fs/cgroup/memory$cgroup_v1/memory.stat" ]]; then
    CGROUP_STAT=/sys/fs/cgroup/memory$cgroup_v1/memory.stat
    CGROUP_KEY="total_cache"
elif [[ -n "$cgroup_v2" && -r "/sys/fs/cgroup$cgroup_v2/memory.stat" ]]; then
    CGROUP_STAT=/sys/fs/cgroup$cgroup_v2/memory.stat
    CGROUP_KEY="file"
fi
cgroup_cache_kib() {
    [[ -n "$CGROUP_STAT" ]] || return 0
    awk -v k="$CGROUP_KEY" '$1 == k { printf "%d\n", $2 / 1024 }' "$CGROUP_STAT"
}
# peak_start FILE: samples Cached every 5 ms in the background until peak_stop, which sets
# PEAK_KIB to the largest value seen (it must run in this shell, not in $(...), to wait for
# the sampler). Builtins only (a read with a timeout on a pipe nobody writes is the sleep): the
# sampler forks nothing and costs a fraction of a CPU while a step runs.
peak_start() {
    PEAK_FILE=$1
    rm -f "$PEAK_FILE.stop" "$PEAK_FILE.fifo"
    mkfifo "$PEAK_FILE.fifo"
    (
        # Open for reading and writing: the open does not wait for a writer, and a read waits
        # for its timeout.
        exec {idle}<>"$PEAK_FILE.fifo"
        peak=0
        while [[ ! -e $PEAK_FILE.stop ]]; do
            while read -r key value _; do
                if [[ $key == Cached: ]]; then
                    ((value > peak)) && peak=$value
                    break
                fi
            done </proc/meminfo
            read -r -t 0.005 -u "$idle" _ || true
        done
        echo "$peak" >"$PEAK_FILE"
    ) &
    PEAK_PID=$!
}
peak_stop() {
    touch "$PEAK_FILE.stop"
    wait "$PEAK_PID" || true
    PEAK_KIB=$(cat "$PEAK_FILE")
    rm -f "$PEAK_FILE" "$PEAK_FILE.stop" "$PEAK_FILE.fifo"
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# drops_now: how many times anybody dropped the page cache since boot (/proc/vmstat).
drops_now() { awk '$1 == "drop_pagecache" { print $2 }' /proc/vmstat; }
now() { date +%s.%N; }

# resident_kib DIR: KiB of the regular files under DIR that are in the page cache.
resident_kib() {
    find "$1" -type f -print0 | xargs -0 -r fincore --bytes --noheadings --raw --output RES |
        awk '{ n += $1 } END { printf "%d\n", n / 1024 }'
}

# sector_of PATH: the logical sector size of the block device under PATH, or "?".
sector_of() {
    local dev
    dev=$(stat -c '%Hd:%Ld' "$1")
    cat "/sys/dev/block/$dev/queue/logical_block_size" 2>/dev/null ||
        cat "/sys/dev/block/$dev/../queue/logical_block_size" 2>/dev/null || echo "?"
}

# start_diofs SRC MNT OPTIONS TAG: mount as mount(8) does, the daemon forking into the
# background once the mount exists (what it says before that: $WORK/TAG-<src name>.log; after,
# it logs to syslog). Sets DIOFS_PID (the daemon in the background) and DIOFS_LOGFILE.
start_diofs() {
    local src=$1 mnt=$2 options=$3 tag=$4 args log pid
    args=("$src" "$mnt")
    [[ -n "$options" ]] && args+=(-o "$options")
    log="$WORK/$tag-$(basename "$src").log"
    MOUNTS+=("$mnt")
    env --default-signal=INT "$DIOFS_BINARY" "${args[@]}" 2>>"$log" || {
        cat "$log" >&2
        die "diofs ${args[*]} failed"
    }
    [[ $(findmnt -n -o FSTYPE --mountpoint "$mnt") == fuse.diofs ]] || die "diofs did not mount $mnt"
    DIOFS_PID=""
    # The one process of $DIOFS_BINARY with exactly these arguments (ours: $WORK is in them).
    for pid in $(pgrep -x "$(basename "$DIOFS_BINARY")"); do
        [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == "$DIOFS_BINARY ${args[*]} " ]] && DIOFS_PID=$pid
    done
    [[ -n $DIOFS_PID ]] || die "no daemon found serving $mnt"
    DAEMONS+=("$DIOFS_PID")
    DIOFS_LOGFILE=$log
}

# stop_diofs MNT PID: unmount, and wait (10 s at most) until the daemon has exited.
stop_diofs() {
    local mnt=$1 pid=$2 i
    umount "$mnt"
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    die "diofs on $mnt still runs 10 s after umount"
}

# peak_rss_kib PID: the peak resident set (VmHWM) of a running process, in KiB.
peak_rss_kib() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status" 2>/dev/null; }

# ratio_row LABEL DIGITS BASE CONFIG VALUE [CONFIG VALUE...]: a Markdown table row of the
# values, each but the plain directory's followed by its ratio to BASE (DIGITS decimals).
ratio_row() {
    local label=$1 digits=$2 base=$3 row config s
    shift 3
    row="| $label |"
    while (($# >= 2)); do
        config=$1 s=$2
        shift 2
        if [[ -n $base && $config != plain ]]; then
            row+=" $s ($(awk -v a="$s" -v b="$base" -v d="$digits" 'BEGIN { printf "%." d "f", a / b }')) |"
        else
            row+=" $s |"
        fi
    done
    echo "$row"
}

# statistics of space-separated numbers on stdin
median() { local p=${1:-2}; tr ' ' '\n' | grep . | sort -g | awk -v p="$p" '{ v[NR] = $1 } END { printf "%." p "f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
smallest() { tr ' ' '\n' | grep . | sort -g | head -n 1; }
largest() { tr ' ' '\n' | grep . | sort -g | tail -n 1; }

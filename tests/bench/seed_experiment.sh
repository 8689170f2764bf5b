#!/bin/bash
# The experiment of seed 002 (PolyServe "DBOptimized"), repeated: how much page cache do
# `cp` of a 128 MiB redo log, `gzip` of the copy and `gunzip` of the result use, and how long
# do they take, in a plain directory (buffered), a diofs dbopt mount and a diofs mount without
# dbopt, on the machine's file system under /var/tmp and on xfs on a loop device with
# 4096-byte sectors. Prints a Markdown table.
#
# usage: sudo tests/bench/seed_experiment.sh
#
# Environment:
#   DIOFS_BINARY  the daemon (default: diofs on $PATH, else build/diofs of this repository)
#   SIZE_MIB      size of the redo log in MiB (default 128, as in the seed)
#   REPEAT        how many times each configuration runs the three steps (default 3)
#   WORK_PARENT   where the plain backing directory and the loop image go (default /var/tmp)
#   MKREDO        the redo-log generator (default: shared/tools/mkredo.py beside the repository)
#
# For every configuration and backing: mkredo.py writes redo.log into the backing directory,
# then `sync; echo 3 > /proc/sys/vm/drop_caches`; then each step, measured alone:
#   (a) cp redo.log redo.copy     (b) gzip redo.copy     (c) gunzip -c redo.copy.gz > redo.back
# run in the directory (the mount for diofs). Before a step: sync, drop caches, read Cached
# from /proc/meminfo; after it: sync, read Cached again. Reported: wall time of the command,
# wall time including the sync after it (buffered writers leave their writeback to it), growth
# of Cached in KiB, and the bytes of the backing files resident in the page cache (fincore).
# redo.back must equal redo.log. Every configuration repeats the steps (REPEAT); the table shows
# the median times, the median and range of the Cached growth and the largest resident size.
# Beside them: a row "nothing" that measures `sleep 3` the same way (the noise of the machine),
# a `dd iflag=direct oflag=direct bs=1M` copy beside step (a) (the speed of plain direct I/O on
# the same device), and, when installed, `nocache` (Debian package nocache).
#
# Cached is machine-wide: whatever else runs on the machine moves it (usually a few hundred
# KiB; tens of MiB while other I/O-heavy work runs). The loop device uses direct I/O on its
# image, so that the image file does not add its own pages to Cached. Cached also counts the
# kernel's FUSE-side page cache of a mount, which fincore on the backing files does not see.
# Beside Cached, the page cache charged to the script's own memory cgroup (memory.stat) is
# reported: pages are charged to the cgroup of the process that brought them in (the tool or
# the daemon, both in this cgroup), so other work on the machine does not disturb it.
#
# Everything it makes (mounts, daemons, the loop device, directories) is removed on exit, also
# when it fails or is interrupted. Exit status: 0, or 1 when a step failed or a result differed.

set -euo pipefail

SIZE_MIB=${SIZE_MIB:-128}
REPEAT=${REPEAT:-3}
WORK_PARENT=${WORK_PARENT:-/var/tmp}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))
MKREDO=${MKREDO:-$repo/../shared/tools/mkredo.py}
if [[ -z "${DIOFS_BINARY:-}" ]]; then
    DIOFS_BINARY=$(command -v diofs || echo "$repo/build/diofs")
fi

BENCH_NAME=seed_experiment
# shellcheck source=lib.sh
source "$here/lib.sh"
[[ $(id -u) == 0 ]] || die "needs root (mounts, loop devices, drop_caches)"
[[ -e /dev/fuse ]] || die "/dev/fuse does not exist"
[[ -x "$DIOFS_BINARY" ]] || die "no diofs at '$DIOFS_BINARY' (set DIOFS_BINARY)"
[[ -f "$MKREDO" ]] || die "no mkredo.py at '$MKREDO' (set MKREDO)"
for tool in fincore losetup mkfs.xfs python3 gzip findmnt; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

install_cleanup

# --- the machine -----------------------------------------------------------------------------
WORK=$(mktemp -d "$WORK_PARENT/diofs-seed.XXXXXXXX")
plain_base=$WORK/plain
mkdir "$plain_base" "$WORK/mnt"

make_xfs4k_loop $((SIZE_MIB * 6 + 512))
xfs_base=$WORK/xfs4k

var_fs=$(findmnt -n -o FSTYPE,SOURCE --target "$WORK_PARENT" | tr -s ' ')
echo "## diofs: the seed 002 experiment"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- machine: $(nproc) CPUs ($(awk -F: '/^model name/ { gsub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r)"
echo "- $WORK_PARENT: $var_fs, $(sector_of "$WORK_PARENT")-byte logical sectors"
echo "- loop device: $LOOP, $(blockdev --getss "$LOOP")-byte logical sectors, direct I/O on its image, xfs (reflink $(xfs_info "$xfs_base" 2>/dev/null | grep -o 'reflink=[01]' | cut -d= -f2))"
echo "- diofs: $DIOFS_BINARY ($("$DIOFS_BINARY" --version 2>&1 | head -n 1)); $(gzip --version | head -n 1); $(cp --version | head -n 1)"
echo "- redo log: $SIZE_MIB MiB from $(basename "$MKREDO"); steps: (a) \`cp redo.log redo.copy\` (b) \`gzip redo.copy\` (c) \`gunzip -c redo.copy.gz > redo.back\`"
echo "- before each step: sync, drop caches; Cached growth = Cached after the step and a sync - Cached before; resident = fincore of the backing files after the step"
echo "- each configuration runs the three steps $REPEAT times on the same redo.log; reported: the median wall times, the median and range of the Cached growth (Cached is machine-wide: other work on the machine moves it both ways, see the row 'nothing'), and the largest fincore resident size"
echo "- disturbed runs: repetitions during which another process dropped the page cache (drop_pagecache in /proc/vmstat), which lowers what they show"
if [[ -n "$CGROUP_STAT" ]]; then
    echo "- cgroup page cache: $CGROUP_KEY in $CGROUP_STAT, the page cache charged to the cgroup this script and its daemons run in (other work on the machine does not move it)"
else
    echo "- no memory cgroup to read: no cgroup column"
fi
echo "- on xfs, \`cp\` clones (copy_file_range: reflink), with or without diofs: no data moves"
echo

# --- the runs --------------------------------------------------------------------------------
KEYS=()               # CONFIG|BACKING|STEP, in the order measured
declare -A WALL SYNCED GROWTH CGROWTH RESIDENT DISTURBED  # KEY -> the values of every repetition, space-separated
ALIGN_LINES=()        # what the dbopt mounts logged about the alignment
VERDICTS=()           # redo.back vs redo.log
NOTES=()
FAILED=0

# measure CONFIG BACKING STEP DIR SRC COMMAND: run COMMAND (a bash snippet) in DIR, once.
measure() {
    local config=$1 backing=$2 step=$3 dir=$4 src=$5 command=$6
    local key="$1|$2|$3" c0 c1 g0 g1 d0 d1 t0 t1 t2 res status=0
    [[ -v "WALL[$key]" ]] || KEYS+=("$key")
    drop_caches
    d0=$(drops_now)
    c0=$(cached_kib)
    g0=$(cgroup_cache_kib)
    t0=$(now)
    (cd "$dir" && bash -c "$command") || status=$?
    t1=$(now)
    sync
    t2=$(now)
    c1=$(cached_kib)
    g1=$(cgroup_cache_kib)
    res=$(resident_kib "$src")
    d1=$(drops_now)
    [[ "$d0" == "$d1" ]] || DISTURBED[$key]+="x"
    if ((status != 0)); then
        echo "seed_experiment: $config on $backing: step '$command' failed with status $status" >&2
        FAILED=1
    fi
    WALL[$key]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') "
    SYNCED[$key]+="$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.3f", b - a }') "
    GROWTH[$key]+="$((c1 - c0)) "
    [[ -n "$g0" ]] && CGROWTH[$key]+="$((g1 - g0)) "
    RESIDENT[$key]+="$res "
}

# run CONFIG BACKING_NAME BACKING_DIR
run() {
    local config=$1 backing=$2 base=$3
    local src=$base/run-$config dir prefix="" verdict rep
    mkdir "$src"
    dir=$src
    case $config in
        diofs-dbopt) start_diofs "$src" "$WORK/mnt" dbopt "$backing"; dir=$WORK/mnt ;;
        diofs) start_diofs "$src" "$WORK/mnt" "" "$backing"; dir=$WORK/mnt ;;
        nocache) prefix="nocache " ;;
    esac
    if [[ $config == diofs-dbopt ]]; then
        ALIGN_LINES+=("$backing: $(grep -o 'direct-I/O alignment of .*' "$DIOFS_LOGFILE" |
            sed "s|of $src|of the backing directory|")")
    fi
    if [[ $config == idle ]]; then
        for ((rep = 1; rep <= REPEAT; rep++)); do
            measure "$config" "$backing" "sleep 3" "$dir" "$src" "sleep 3"
        done
        rm -rf "$src"
        return 0
    fi
    python3 "$MKREDO" "$src/redo.log" $((SIZE_MIB * 1024 * 1024))
    for ((rep = 1; rep <= REPEAT; rep++)); do
        rm -f "$src/redo.copy" "$src/redo.copy.gz" "$src/redo.back"
        if [[ $config == dd-direct ]]; then
            measure "$config" "$backing" "(a) copy" "$dir" "$src" \
                "dd if=redo.log of=redo.copy bs=1M iflag=direct oflag=direct status=none"
            if ! cmp -s "$src/redo.log" "$src/redo.copy"; then
                echo "seed_experiment: the dd copy differs from redo.log ($backing)" >&2
                FAILED=1
            fi
            continue
        fi
        measure "$config" "$backing" "(a) cp" "$dir" "$src" "${prefix}cp redo.log redo.copy"
        measure "$config" "$backing" "(b) gzip" "$dir" "$src" "${prefix}gzip redo.copy"
        if [[ -n "$prefix" ]]; then
            measure "$config" "$backing" "(c) gunzip" "$dir" "$src" \
                "nocache sh -c 'gunzip -c redo.copy.gz > redo.back'"
        else
            measure "$config" "$backing" "(c) gunzip" "$dir" "$src" "gunzip -c redo.copy.gz > redo.back"
        fi
        if cmp -s "$src/redo.log" "$src/redo.back"; then
            verdict="identical"
        else
            verdict="DIFFERENT"
            FAILED=1
        fi
        if [[ $rep == 1 || $verdict == DIFFERENT ]]; then
            VERDICTS+=("$config on $backing (run $rep): redo.back is $verdict to redo.log ($(stat -c %s "$src/redo.copy.gz") bytes compressed)")
        fi
    done
    if [[ $config == diofs* ]]; then
        stop_diofs "$WORK/mnt" "$DIOFS_PID"
    fi
    rm -rf "$src"
}

configs=(idle plain diofs-dbopt diofs dd-direct)
if command -v nocache >/dev/null; then
    configs+=(nocache)
else
    NOTES+=("nocache is not installed: no nocache rows")
fi
for backing in "var-tmp" "xfs-4k"; do
    case $backing in
        var-tmp) base=$plain_base ;;
        xfs-4k) base=$xfs_base ;;
    esac
    for config in "${configs[@]}"; do
        [[ $config == idle && $backing != var-tmp ]] && continue
        echo "running: $config on $backing ..." >&2
        run "$config" "$backing" "$base"
    done
done

# --- the table -------------------------------------------------------------------------------
label() {
    case $1 in
        plain) echo "plain directory (buffered)" ;;
        diofs-dbopt) echo "diofs -o dbopt" ;;
        diofs) echo "diofs (no dbopt)" ;;
        dd-direct) echo "dd iflag=direct oflag=direct bs=1M (peer)" ;;
        idle) echo "nothing (the machine's noise)" ;;
        nocache) echo "nocache (peer)" ;;
    esac
}
backing_label() {
    case $1 in
        var-tmp) echo "$WORK_PARENT ($(echo "$var_fs" | cut -d' ' -f1), $(sector_of "$WORK_PARENT") B)" ;;
        xfs-4k) echo "loop xfs (4096 B)" ;;
    esac
}
spread() { echo "$(median <<<"$1" | cut -d. -f1) ($(smallest <<<"$1")…$(largest <<<"$1"))"; }

declare -A plain_time  # the plain directory's median wall+sync time, per backing and step
for key in "${KEYS[@]}"; do
    IFS='|' read -r config backing step <<<"$key"
    [[ $config == plain ]] && plain_time["$backing|$step"]=$(median <<<"${SYNCED[$key]}")
done
echo "| configuration | backing | step | wall s | wall+sync s | × plain (wall+sync) | Cached growth KiB, median (min…max) | cgroup page cache growth KiB, median (min…max) | fincore resident KiB (backing files) | disturbed runs |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
for key in "${KEYS[@]}"; do
    IFS='|' read -r config backing step <<<"$key"
    synced=$(median <<<"${SYNCED[$key]}")
    ref=${plain_time["$backing|$step"]:-${plain_time["$backing|(a) cp"]:-0}}
    [[ $config == idle ]] && ref=0
    ratio=$(awk -v a="$synced" -v b="$ref" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    growth=$(spread "${GROWTH[$key]}")
    cgrowth=-
    [[ -v "CGROWTH[$key]" ]] && cgrowth=$(spread "${CGROWTH[$key]}")
    echo "| $(label "$config") | $(backing_label "$backing") | $step | $(median <<<"${WALL[$key]}") | $synced | $ratio | $growth | $cgrowth | $(largest <<<"${RESIDENT[$key]}") | $(printf '%s' "${DISTURBED[$key]:-}" | wc -c)/$(wc -w <<<"${WALL[$key]}") |"
done
echo
for line in "${ALIGN_LINES[@]}"; do echo "- dbopt log, $line"; done
for line in "${VERDICTS[@]}"; do echo "- $line"; done
for line in "${NOTES[@]}"; do echo "- $line"; done
((FAILED == 0)) || die "a step failed or a result differed (see above)"

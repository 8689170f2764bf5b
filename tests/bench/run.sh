#!/bin/bash
# The benchmark suite of issue 4: time and page cache of archive-style workloads in a plain
# directory, through diofs (with and without dbopt) and through peers, all on one backing file
# system, in one run. Writes a Markdown report and a PNG chart of the time ratios.
#
# usage: sudo tests/bench/run.sh
#
# Environment:
#   DIOFS_BINARY  the daemon (default: diofs on $PATH, else build/diofs of this repository)
#   BENCH_RUNS    runs of every cell; the median is reported (default 3)
#   SIZE_MIB      size of the redo log of the seed's experiment (default 128)
#   TAR_MIB       size of each of the 4 files of the directory for tar (default 32)
#   DD_MIB        size of the dd writes and reads (default 256)
#   STREAMS_MIB   size of each of the 8 files of the "8 streams" rows (default 64)
#   STREAMS_BS    block size of the "8 streams" rows: 4K, 16K, 128K or 1M (default 1M)
#   BENCH_LOOP4K  1: back everything with xfs on a loop device with 4096-byte sectors (made in
#                 WORK_PARENT) instead of a directory in WORK_PARENT
#   WORK_PARENT   where the backing directory (or the loop image) goes (default /var/tmp)
#   BENCH_OUT     where the report goes (default: tests/bench/results)
#   BENCH_TAG     name of the report files: BENCH_OUT/TAG.md and TAG.png (default: the date)
#   BENCH_CONFIGS configurations to run, space-separated (default: all of plain diofs-dbopt
#                 diofs nocache mergerfs dd-direct that are installed)
#   BENCH_WORKLOADS  workloads to run, space-separated (default: all). A workload's name is
#                 its row's name with the blanks before an option dropped and the other
#                 blanks made dashes: cp gzip-1 gzip-9 gunzip tar-c tar-x dd-write-4K ...
#                 dd-read-1M 8-streams-write 8-streams-read. A word selects the workloads
#                 it names, those it matches as a shell pattern, and those whose name starts
#                 with it and a dash: "dd" is every dd row, "dd-read" the dd reads, "8-streams"
#                 both stream rows, "gzip" both gzips, "dd-*-1M" the two 1M rows.
#   BENCH_DBOPT_OPTS  appended to the -o options of the diofs-dbopt mount (default empty):
#                 e.g. strict, or readahead=0,writebehind=0, or max_threads=4,clone_fd; passed
#                 through as they are (the daemon refuses what it does not know)
#   BENCH_WARM_RUNS  runs of every cell with the programs warmed (the "cgroup warm" column;
#                 default BENCH_RUNS; 0: none)
#   BENCH_NO_INSTALL  1: do not apt-get install missing nocache, mergerfs, gnuplot-nox
#   MKREDO        the redo-log generator (default: shared/tools/mkredo.py beside the repository)
#
# Configurations (each one a column of the ratio table and a bar of the chart):
#   plain        the backing directory itself, buffered (the reference: ratio 1)
#   diofs-dbopt  a diofs -o dbopt mount of a directory of it
#   diofs        a diofs mount without dbopt
#   nocache      Debian's nocache (LD_PRELOAD) wrapped around every command, in the directory
#   mergerfs     mergerfs -o cache.files=off of the directory (one branch)
#   dd-direct    dd iflag=direct / oflag=direct bs=1M in the directory: the device's limit
#                (only the cp cell, as a dd copy with both flags, the dd bs=1M cells, and the
#                8 streams cells when STREAMS_BS is 1M)
# Workloads, run in the directory (or the mount), each BENCH_RUNS times:
#   cp           cp redo.log redo.copy            (redo.log from mkredo.py, SIZE_MIB)
#   gzip -1/-9   gzip -1|-9 -c redo.log > redo.N.gz
#   gunzip       gunzip -c redo.1.gz > redo.back  (must equal redo.log)
#   tar c        tar cf tree.tar tree             (tree: 4 redo logs of TAR_MIB)
#   tar x        tar xf tree.tar -C untar         (must equal tree)
#   dd write BS  dd if=/dev/zero of=dd.out bs=BS count=DD_MIB/BS conv=fsync
#   dd read BS   dd if=dd.src of=/dev/null bs=BS  (dd.src: DD_MIB of random bytes)
#   8 streams write  8 concurrent dd if=/dev/zero of=streamN.out bs=STREAMS_BS conv=fsync, of
#                STREAMS_MIB each (dd-direct: with oflag=direct, only when STREAMS_BS is 1M)
#   8 streams read   8 concurrent dd if=streamN.out of=/dev/null bs=STREAMS_BS, of the files
#                the writers wrote (made first, unmeasured, when that row did not run)
# gunzip and tar x use what gzip -1 and tar c made, and make it first (unmeasured) when those
# did not run.
# Before each run: sync, drop caches, read Cached (/proc/meminfo) and the page cache of this
# script's memory cgroup (the daemons run in it too; other work on the machine does not move
# it); after it: sync, read them again, and fincore the backing files. The time reported is wall
# time including that sync (buffered writers leave their writeback to it). A FUSE daemon is
# mounted afresh for every workload; its peak RSS (VmHWM) is read before it is unmounted.
#
# Those cold runs also count the programs (cp, gzip, tar, dd, sync and their libraries) that are
# read back from the disk after drop_caches: 1-3 MiB whatever the file size. So every cell also
# has BENCH_WARM_RUNS warm runs, each after a cold one: drop caches, then run the same commands
# (the same preparation, the same command with a count of 1 for dd writes, sync, date) with the
# same prefix on tiny files (4 KiB, same names) in a scratch tmpfs of this script, delete them
# (tmpfs pages count as page cache, freed when deleted), and only then read the cgroup's page
# cache, run the real command and sync, and read it again: "cgroup warm". The warm-up never
# touches the measured files nor the backing file system, so what it does not exclude is the
# data and the metadata (Buffers: bitmaps, inode tables, directories; 130-300 KiB per cell on
# ext4) of the real command. The daemon has served the same command in the cold run before,
# so its own code is resident too.
#
# Everything it makes (mounts, daemons, the loop device, the work directory) is removed on exit,
# also when it fails or is interrupted; only the report stays. Exit status 0, or 1 when a step
# failed or a result differed from what was expected.

set -euo pipefail

RUNS=${BENCH_RUNS:-3}
SIZE_MIB=${SIZE_MIB:-128}
TAR_MIB=${TAR_MIB:-32}
DD_MIB=${DD_MIB:-256}
STREAMS_MIB=${STREAMS_MIB:-64}
STREAMS_BS=${STREAMS_BS:-1M}
WARM_RUNS=${BENCH_WARM_RUNS:-$RUNS}
DBOPT_OPTS=${BENCH_DBOPT_OPTS:-}
WORK_PARENT=${WORK_PARENT:-/var/tmp}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || (cd "$here/../.." && pwd))
MKREDO=${MKREDO:-$repo/../shared/tools/mkredo.py}
OUT=${BENCH_OUT:-$here/results}
TAG=${BENCH_TAG:-$(date -u +%Y%m%d-%H%M)}
if [[ -z "${DIOFS_BINARY:-}" ]]; then
    DIOFS_BINARY=$(command -v diofs || echo "$repo/build/diofs")
fi
command_line="tests/bench/run.sh"
for v in BENCH_RUNS BENCH_WARM_RUNS SIZE_MIB TAR_MIB DD_MIB STREAMS_MIB STREAMS_BS BENCH_LOOP4K \
    BENCH_CONFIGS BENCH_WORKLOADS BENCH_DBOPT_OPTS BENCH_TAG; do
    if [[ -n "${!v:-}" ]]; then command_line="$v='${!v}' $command_line"; fi
done

BENCH_NAME=run.sh
# shellcheck source=lib.sh
source "$here/lib.sh"

[[ $(id -u) == 0 ]] || die "needs root (mounts, loop devices, drop_caches)"
[[ -e /dev/fuse ]] || die "/dev/fuse does not exist"
[[ -x "$DIOFS_BINARY" ]] || die "no diofs at '$DIOFS_BINARY' (set DIOFS_BINARY)"
[[ -f "$MKREDO" ]] || die "no mkredo.py at '$MKREDO' (set MKREDO)"
for tool in fincore findmnt python3 gzip tar dd cmp; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
[[ "${BENCH_LOOP4K:-0}" == 1 ]] && { command -v mkfs.xfs >/dev/null || die "mkfs.xfs is not installed"; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be at least 1"
[[ $WARM_RUNS =~ ^[0-9]+$ ]] || die "BENCH_WARM_RUNS must be a number"
[[ $STREAMS_MIB =~ ^[1-9][0-9]*$ ]] || die "STREAMS_MIB must be at least 1"
[[ $DBOPT_OPTS != *[[:space:]]* ]] || die "BENCH_DBOPT_OPTS must not contain blanks"

NOTES=()
missing=()
command -v nocache >/dev/null || missing+=(nocache)
command -v mergerfs >/dev/null || missing+=(mergerfs)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
if ((${#missing[@]} > 0)) && [[ "${BENCH_NO_INSTALL:-0}" != 1 ]] && command -v apt-get >/dev/null; then
    echo "run.sh: installing ${missing[*]} (apt-get install -y; BENCH_NO_INSTALL=1 to skip)" >&2
    if DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2; then
        NOTES+=("installed for this run: ${missing[*]}")
    else
        NOTES+=("apt-get install ${missing[*]} failed")
    fi
fi

install_cleanup

# --- workloads -------------------------------------------------------------------------------
BSIZES=(4K 16K 128K 1M)
declare -A BS_KIB=([4K]=4 [16K]=16 [128K]=128 [1M]=1024)
[[ -v "BS_KIB[$STREAMS_BS]" ]] || die "STREAMS_BS must be one of ${BSIZES[*]}"
ALL_WORKLOADS=("cp" "gzip -1" "gzip -9" "gunzip" "tar c" "tar x")
for bs in "${BSIZES[@]}"; do ALL_WORKLOADS+=("dd write $bs"); done
for bs in "${BSIZES[@]}"; do ALL_WORKLOADS+=("dd read $bs"); done
ALL_WORKLOADS+=("8 streams write" "8 streams read")
STREAMS=8

# workload_name W: the name BENCH_WORKLOADS uses ("gzip -1" -> gzip-1, "dd write 4K" -> dd-write-4K)
workload_name() { local n=${1// -/-}; echo "${n// /-}"; }
# selects WORD NAME: whether the word of BENCH_WORKLOADS selects the workload NAME
selects() {
    # shellcheck disable=SC2053  # the word is a pattern on purpose
    [[ $2 == "$1" || $2 == $1 || $2 == "$1"-* ]]
}
WORKLOADS=()
if [[ -n "${BENCH_WORKLOADS:-}" ]]; then
    read -r -a words <<<"$BENCH_WORKLOADS"
    for word in "${words[@]}"; do
        found=0
        for w in "${ALL_WORKLOADS[@]}"; do selects "$word" "$(workload_name "$w")" && found=1; done
        ((found)) || die "BENCH_WORKLOADS: '$word' names no workload (names: $(for w in "${ALL_WORKLOADS[@]}"; do printf '%s ' "$(workload_name "$w")"; done))"
    done
    for w in "${ALL_WORKLOADS[@]}"; do
        for word in "${words[@]}"; do
            if selects "$word" "$(workload_name "$w")"; then WORKLOADS+=("$w"); break; fi
        done
    done
else
    WORKLOADS=("${ALL_WORKLOADS[@]}")
fi
# wants PATTERN...: whether some selected workload matches one of the patterns
wants() {
    local w p
    for w in "${WORKLOADS[@]}"; do
        for p in "$@"; do
            # shellcheck disable=SC2053
            [[ $w == $p ]] && return 0
        done
    done
    return 1
}

# --- the backing file system -----------------------------------------------------------------
mkdir -p "$OUT"
WORK=$(mktemp -d "$WORK_PARENT/diofs-bench.XXXXXXXX")
mkdir "$WORK/mnt"
if [[ "${BENCH_LOOP4K:-0}" == 1 ]]; then
    make_xfs4k_loop $(((SIZE_MIB * 4 + TAR_MIB * 12 + DD_MIB * 3 + STREAMS * STREAMS_MIB) + 1024))
    base=$WORK/xfs4k
    backing_desc="xfs on loop device $LOOP ($(blockdev --getss "$LOOP")-byte logical sectors, direct I/O on its image in $WORK_PARENT)"
    NOTES+=("on xfs, \`cp\` clones (reflink), with or without diofs: no data moves")
else
    base=$WORK/plain
    mkdir "$base"
    backing_desc="$(findmnt -n -o FSTYPE,SOURCE --target "$WORK_PARENT" | tr -s ' ' | sed 's/ / on /') under $WORK_PARENT ($(sector_of "$WORK_PARENT")-byte logical sectors)"
fi

# The inputs the selected workloads need, made once and copied (not cloned) into each
# configuration's directory.
echo "run.sh: making the inputs in $base ..." >&2
inputs=$base/inputs
mkdir -p "$inputs"
if wants cp "gzip *" gunzip; then
    python3 "$MKREDO" "$inputs/redo.log" $((SIZE_MIB * 1024 * 1024))
fi
if wants "tar *"; then
    mkdir "$inputs/tree"
    for i in 1 2 3 4; do
        python3 "$MKREDO" "$inputs/tree/redo$i.log" $((TAR_MIB * 1024 * 1024))
    done
fi
if wants "dd read *"; then
    head -c $((DD_MIB * 1024 * 1024)) /dev/urandom >"$inputs/dd.src"
fi

# The scratch file system of the warm-ups (see the header): a tmpfs of this script's own.
scratch=$WORK/warm
mkdir "$scratch"
MOUNTS+=("$scratch")
mount -t tmpfs -o size=64m,mode=0700 diofs-bench-warm "$scratch"

# --- configurations and workloads ------------------------------------------------------------
if [[ -n "${BENCH_CONFIGS:-}" ]]; then
    read -r -a CONFIGS <<<"$BENCH_CONFIGS"
else
    CONFIGS=(plain diofs-dbopt diofs)
    if command -v nocache >/dev/null; then CONFIGS+=(nocache); else NOTES+=("nocache is not installed: no nocache column"); fi
    if command -v mergerfs >/dev/null; then CONFIGS+=(mergerfs); else NOTES+=("mergerfs is not installed: no mergerfs column"); fi
    CONFIGS+=(dd-direct)
fi
[[ ${CONFIGS[0]} == plain ]] || die "the first configuration must be plain (the reference)"
DBOPT_MOUNT_OPTS=dbopt${DBOPT_OPTS:+,$DBOPT_OPTS}
if [[ " ${CONFIGS[*]} " == *" dd-direct "* && $STREAMS_BS != 1M ]] && wants "8 streams *"; then
    NOTES+=("dd direct bs=1M: no 8 streams rows, as STREAMS_BS is $STREAMS_BS")
fi

# workload_prepare W: not measured, in the directory (also in the scratch of a warm-up)
workload_prepare() {
    case $1 in
        cp) echo "rm -f redo.copy" ;;
        "gzip -1") echo "rm -f redo.1.gz" ;;
        "gzip -9") echo "rm -f redo.9.gz" ;;
        gunzip) echo "rm -f redo.back && { [ -e redo.1.gz ] || gzip -1 -c redo.log > redo.1.gz; }" ;;
        "tar c") echo "rm -f tree.tar" ;;
        "tar x") echo "rm -rf untar && mkdir untar && { [ -e tree.tar ] || tar cf tree.tar tree; }" ;;
        "dd write"*) echo "rm -f dd.out" ;;
        "8 streams write") echo "rm -f stream[0-9]*.out" ;;
        "8 streams read")
            echo "for i in \$(seq $STREAMS); do [ -e stream\$i.out ] || dd if=/dev/zero of=stream\$i.out bs=1M count=$STREAMS_MIB status=none || exit; done" ;;
        *) echo "true" ;;
    esac
}
# concurrently COMMAND: COMMAND (with \$i in it) run for i = 1..STREAMS at once; fails when one
# of them failed
concurrently() {
    echo "p=; for i in \$(seq $STREAMS); do $1 & p=\"\$p \$!\"; done; s=0; for j in \$p; do wait \$j || s=\$?; done; exit \$s"
}
# workload_command CONFIG W [warm]: the measured command (bash), or nothing when CONFIG does not
# run W; with "warm", the command of the warm-up (dd writes of one block)
workload_command() {
    local config=$1 w=$2 warm=${3:-} bs count
    if [[ $config == dd-direct ]]; then
        count=$DD_MIB
        [[ -n $warm ]] && count=1
        case $w in
            # The copy at the device's limit: read and write direct, one after the other.
            cp) echo "dd if=redo.log of=redo.copy bs=1M iflag=direct oflag=direct conv=fsync status=none" ;;
            "dd write 1M") echo "dd if=/dev/zero of=dd.out bs=1M count=$count oflag=direct conv=fsync status=none" ;;
            "dd read 1M") echo "dd if=dd.src of=/dev/null bs=1M iflag=direct status=none" ;;
            "8 streams write")
                count=$STREAMS_MIB
                [[ -n $warm ]] && count=1
                [[ $STREAMS_BS == 1M ]] && concurrently "dd if=/dev/zero of=stream\$i.out bs=1M count=$count oflag=direct conv=fsync status=none" ;;
            "8 streams read")
                [[ $STREAMS_BS == 1M ]] && concurrently "dd if=stream\$i.out of=/dev/null bs=1M iflag=direct status=none" ;;
        esac
        return 0
    fi
    case $w in
        cp) echo "cp redo.log redo.copy" ;;
        "gzip -1") echo "gzip -1 -c redo.log > redo.1.gz" ;;
        "gzip -9") echo "gzip -9 -c redo.log > redo.9.gz" ;;
        gunzip) echo "gunzip -c redo.1.gz > redo.back" ;;
        "tar c") echo "tar cf tree.tar tree" ;;
        "tar x") echo "tar xf tree.tar -C untar" ;;
        "dd write"*)
            bs=${w##* }
            count=$((DD_MIB * 1024 / BS_KIB[$bs]))
            [[ -n $warm ]] && count=1
            echo "dd if=/dev/zero of=dd.out bs=$bs count=$count conv=fsync status=none" ;;
        "dd read"*) echo "dd if=dd.src of=/dev/null bs=${w##* } status=none" ;;
        "8 streams write")
            count=$((STREAMS_MIB * 1024 / BS_KIB[$STREAMS_BS]))
            [[ -n $warm ]] && count=1
            concurrently "dd if=/dev/zero of=stream\$i.out bs=$STREAMS_BS count=$count conv=fsync status=none" ;;
        "8 streams read") concurrently "dd if=stream\$i.out of=/dev/null bs=$STREAMS_BS status=none" ;;
    esac
}
# workload_check W SRC: after the runs, on the backing files
workload_check() {
    local i
    case $1 in
        gunzip) cmp -s "$2/redo.log" "$2/redo.back" ;;
        "tar x") diff -r -q "$2/tree" "$2/untar/tree" >/dev/null ;;
        cp) cmp -s "$2/redo.log" "$2/redo.copy" ;;
        "dd write"*) [[ $(stat -c %s "$2/dd.out") == $((DD_MIB * 1024 * 1024)) ]] ;;
        "8 streams write")
            for i in $(seq "$STREAMS"); do
                [[ $(stat -c %s "$2/stream$i.out") == $((STREAMS_MIB * 1024 * 1024)) ]] || return 1
            done ;;
        *) true ;;
    esac
}

# warm_scratch: empty the scratch tmpfs and put tiny (4 KiB) files of the inputs' names in it
warm_scratch() {
    local i
    find "$scratch" -mindepth 1 -delete
    mkdir "$scratch/tree"
    head -c 4096 /dev/urandom >"$scratch/redo.log"
    for i in 1 2 3 4; do head -c 4096 /dev/urandom >"$scratch/tree/redo$i.log"; done
    head -c 4096 /dev/urandom >"$scratch/dd.src"
    for i in $(seq "$STREAMS"); do head -c 4096 /dev/urandom >"$scratch/stream$i.out"; done
}

label() {
    case $1 in
        plain) echo "plain (buffered)" ;;
        diofs-dbopt) echo "diofs -o $DBOPT_MOUNT_OPTS" ;;
        diofs) echo "diofs" ;;
        nocache) echo "nocache" ;;
        mergerfs) echo "mergerfs cache.files=off" ;;
        dd-direct) echo "dd direct bs=1M" ;;
        *) echo "$1" ;;
    esac
}

# start_mergerfs SRC MNT: a foreground mergerfs of one branch; sets MERGERFS_PID
start_mergerfs() {
    local src=$1 mnt=$2 i log=$WORK/mergerfs.log
    MOUNTS+=("$mnt")
    mergerfs -f -o cache.files=off,allow_other "$src" "$mnt" 2>>"$log" &
    MERGERFS_PID=$!
    DAEMONS+=("$MERGERFS_PID")
    for i in $(seq 200); do
        [[ $(findmnt -n -o FSTYPE --mountpoint "$mnt" 2>/dev/null) == fuse.mergerfs ]] && return 0
        kill -0 "$MERGERFS_PID" 2>/dev/null || { cat "$log" >&2; die "mergerfs exited"; }
        sleep 0.05
    done
    die "mergerfs did not mount $mnt"
}
stop_mergerfs() {
    local mnt=$1 pid=$2 i
    umount "$mnt"
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    wait "$pid" || true   # mergerfs exits non-zero on unmount in some versions
}

# --- measuring -------------------------------------------------------------------------------
declare -A TIME GROWTH CGROWTH WGROWTH PEAK WPEAK RESIDENT RSS DISTURBED
FAILED=0

# measure KEY DIR SRC PREFIX COMMAND: a cold run (caches dropped just before)
# measure KEY DIR SRC PREFIX COMMAND W WARMCOMMAND: a warm run (see the header): only the
# growth of the cgroup's page cache (WGROWTH), fincore and disturbance are kept
measure() {
    local key=$1 dir=$2 src=$3 prefix=$4 command=$5 w=${6:-} warm=${7:-} c0 c1 g0 g1 d0 d1 t0 t2 p1 status=0
    drop_caches
    d0=$(drops_now)
    if [[ -n "$warm" ]]; then
        warm_scratch
        # shellcheck disable=SC2086  # the prefix is a word or nothing
        (cd "$scratch" && bash -c "$(workload_prepare "$w")" && $prefix bash -c "$warm") ||
            echo "run.sh: $key: the warm-up '$warm' failed (it is only a warm-up)" >&2
        sync
        now >/dev/null
        find "$scratch" -mindepth 1 -delete
    fi
    c0=$(cached_kib)
    g0=$(cgroup_cache_kib)
    peak_start "$WORK/peak"
    t0=$(now)
    (cd "$dir" && $prefix bash -c "$command") || status=$?
    sync
    t2=$(now)
    peak_stop
    p1=$PEAK_KIB
    c1=$(cached_kib)
    g1=$(cgroup_cache_kib)
    RESIDENT[$key]+="$(resident_kib "$src") "
    d1=$(drops_now)
    [[ "$d0" == "$d1" ]] || DISTURBED[$key]+="x"
    if ((status != 0)); then
        echo "run.sh: $key: '$command' failed with status $status" >&2
        FAILED=1
    fi
    if [[ -n "$warm" ]]; then
        [[ -n "$g0" ]] && WGROWTH[$key]+="$((g1 - g0)) "
        WPEAK[$key]+="$((p1 - c0)) "
        return 0
    fi
    PEAK[$key]+="$((p1 - c0)) "
    TIME[$key]+="$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.3f", b - a }') "
    GROWTH[$key]+="$((c1 - c0)) "
    [[ -n "$g0" ]] && CGROWTH[$key]+="$((g1 - g0)) "
    return 0
}

started=$(date +%s)
for config in "${CONFIGS[@]}"; do
    src=$base/run-$config
    echo "run.sh: $(label "$config") ..." >&2
    mkdir "$src"
    cp -r --reflink=never "$inputs/." "$src/"
    prefix=""
    [[ $config == nocache ]] && prefix=nocache
    for w in "${WORKLOADS[@]}"; do
        command=$(workload_command "$config" "$w")
        [[ -n "$command" ]] || continue
        key="$config|$w"
        dir=$src
        pid=""
        case $config in
            diofs-dbopt) start_diofs "$src" "$WORK/mnt" "$DBOPT_MOUNT_OPTS" "$config"; pid=$DIOFS_PID; dir=$WORK/mnt ;;
            diofs) start_diofs "$src" "$WORK/mnt" "" "$config"; pid=$DIOFS_PID; dir=$WORK/mnt ;;
            mergerfs) start_mergerfs "$src" "$WORK/mnt"; pid=$MERGERFS_PID; dir=$WORK/mnt ;;
        esac
        warm=$(workload_command "$config" "$w" warm)
        for ((r = 1; r <= RUNS || r <= WARM_RUNS; r++)); do
            if ((r <= RUNS)); then
                (cd "$dir" && bash -c "$(workload_prepare "$w")")
                measure "$key" "$dir" "$src" "$prefix" "$command"
            fi
            if ((r <= WARM_RUNS)); then
                (cd "$dir" && bash -c "$(workload_prepare "$w")")
                measure "$key" "$dir" "$src" "$prefix" "$command" "$w" "$warm"
            fi
        done
        if [[ -n "$pid" ]]; then
            RSS[$key]=$(peak_rss_kib "$pid")
            case $config in
                mergerfs) stop_mergerfs "$WORK/mnt" "$pid" ;;
                *) stop_diofs "$WORK/mnt" "$pid" ;;
            esac
        fi
        if ! workload_check "$w" "$src"; then
            echo "run.sh: $key: the result differs from what was expected" >&2
            NOTES+=("**$(label "$config"), $w: the result DIFFERS from what was expected**")
            FAILED=1
        fi
    done
    rm -rf "$src"
done
elapsed=$(($(date +%s) - started))

# --- the report ------------------------------------------------------------------------------
report=$OUT/$TAG.md
chart=$OUT/$TAG.png
cgroup_desc="none readable"
[[ -n "$CGROUP_STAT" ]] && cgroup_desc="$CGROUP_KEY in $CGROUP_STAT"

ratio_of() {  # ratio_of CONFIG W: median time / plain's median time, or "-"
    local t ref
    [[ -v "TIME[$1|$2]" ]] || { echo "-"; return; }
    t=$(median 3 <<<"${TIME[$1|$2]}")
    ref=$(median 3 <<<"${TIME[plain|$2]:-}")
    awk -v a="$t" -v b="$ref" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}

# workload_table FUNCTION: a Markdown table, a row per workload, a column per configuration,
# each cell FUNCTION CONFIG WORKLOAD
workload_table() {
    printf '| workload |'; for c in "${CONFIGS[@]}"; do printf ' %s |' "$(label "$c")"; done; echo
    printf '|---|'; for c in "${CONFIGS[@]}"; do printf -- '---:|'; done; echo
    for w in "${WORKLOADS[@]}"; do
        printf '| %s |' "$w"
        for c in "${CONFIGS[@]}"; do printf ' %s |' "$("$1" "$c" "$w")"; done
        echo
    done
}

peak_of() {  # peak_of CONFIG W: median peak growth of Cached (warm runs, else cold + "c"), or "-"
    if [[ -n "${WPEAK[$1|$2]:-}" ]]; then
        median 0 <<<"${WPEAK[$1|$2]}"
    elif [[ -n "${PEAK[$1|$2]:-}" ]]; then
        echo "$(median 0 <<<"${PEAK[$1|$2]}") c"
    else
        echo "-"
    fi
}

{
    echo "- command: \`sudo $command_line\` (DIOFS_BINARY=$DIOFS_BINARY)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); measuring took $((elapsed / 60)) min $((elapsed % 60)) s"
    echo "- machine: $(nproc) CPUs ($(awk -F: '/^model name/ { gsub(/^ +/, "", $2); print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r)"
    echo "- backing file system: $backing_desc"
    echo "- diofs: $("$DIOFS_BINARY" --version 2>&1 | head -n 1) (git $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')); $(gzip --version | head -n 1); $(tar --version | head -n 1)$(command -v mergerfs >/dev/null && echo "; $(mergerfs --version 2>&1 | head -n 1)")$(command -v nocache >/dev/null && dpkg-query -W -f='; nocache ${Version}' nocache 2>/dev/null)"
    echo "- sizes: redo log $SIZE_MIB MiB, tar directory 4 × $TAR_MIB MiB, dd $DD_MIB MiB, 8 streams × $STREAMS_MIB MiB at bs=$STREAMS_BS; $RUNS runs per cell (and $WARM_RUNS warm runs)"
    echo "- dbopt mount: \`-o $DBOPT_MOUNT_OPTS\` (BENCH_DBOPT_OPTS=${DBOPT_OPTS:-, empty})"
    [[ -n "${BENCH_WORKLOADS:-}" ]] && echo "- workloads: BENCH_WORKLOADS='$BENCH_WORKLOADS' selected $(for w in "${WORKLOADS[@]}"; do printf '%s, ' "$w"; done | sed 's/, $//')"
    echo "- time: median wall time of the command plus the \`sync\` after it, caches dropped before each run; × plain: that time over the plain directory's"
    echo "- Cached: growth of Cached in /proc/meminfo (machine-wide, noisy on a shared machine); cgroup: growth of the page cache charged to this script's memory cgroup ($cgroup_desc), both medians, KiB, of the cold runs, which include reading back the programs (cp, gzip, tar, dd, sync and their libraries, 1-3 MiB) after drop_caches; fincore: the largest resident size of the backing files after a run, KiB"
    echo "- cgroup warm: the same growth, median KiB, in the warm runs: after drop_caches the same commands first ran on tiny 4 KiB files of the same names in a scratch tmpfs, which were deleted before measuring, so it excludes the loading of the programs but not the data nor the backing file system's metadata (Buffers, 130-300 KiB per cell on ext4)"
    echo "- 8 streams: $STREAMS concurrent sequential dd (conv=fsync) writers of their own file, or $STREAMS concurrent readers of those files; the time is that of the whole group"
    echo "- RSS: the FUSE daemon's peak resident set (VmHWM), MiB; a daemon is mounted afresh for each workload"
    echo
    echo "### Time, × the plain directory"
    echo
    workload_table ratio_of
    echo
    echo "### Peak of Cached during the step, KiB above its value before the step"
    echo
    echo "Sampled every 5 ms while the command and its \`sync\` ran; median of the warm runs (programs loaded beforehand: their pages do not count), else of the cold runs (marked c)."
    echo
    workload_table peak_of
    echo
    echo "### All cells"
    echo
    echo "| workload | configuration | time s | × plain | Cached KiB | peak Cached KiB | cgroup KiB | cgroup warm KiB | fincore KiB | RSS MiB | disturbed runs |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for w in "${WORKLOADS[@]}"; do
        for c in "${CONFIGS[@]}"; do
            key="$c|$w"
            [[ -v "TIME[$key]" ]] || continue
            cg=-
            [[ -v "CGROWTH[$key]" ]] && cg=$(median <<<"${CGROWTH[$key]}" | cut -d. -f1)
            wcg=-
            [[ -v "WGROWTH[$key]" ]] && wcg=$(median <<<"${WGROWTH[$key]}" | cut -d. -f1)
            rss=-
            [[ -n "${RSS[$key]:-}" ]] && rss=$(awk -v k="${RSS[$key]}" 'BEGIN { printf "%.1f", k / 1024 }')
            echo "| $w | $(label "$c") | $(median <<<"${TIME[$key]}") | $(ratio_of "$c" "$w") | $(median <<<"${GROWTH[$key]}" | cut -d. -f1) | $(peak_of "$c" "$w") | $cg | $wcg | $(largest <<<"${RESIDENT[$key]}") | $rss | $(printf '%s' "${DISTURBED[$key]:-}" | wc -c)/$((RUNS + WARM_RUNS)) |"
        done
    done
    echo
    for line in "${NOTES[@]}"; do echo "- $line"; done
    echo "- disturbed runs: runs (cold and warm) during which some process dropped the page cache (drop_pagecache in /proc/vmstat), which lowers the growth they show"
} >"$report"

# chart DATA PNG TITLE YLABEL YMIN LINE: one group of bars per workload, one bar per
# configuration, log scale, a dashed line at LINE; says in the report where it went
chart() {
    local data=$1 png=$2 title=$3 ylabel=$4 ymin=$5 line=$6
    if ! command -v gnuplot >/dev/null; then
        echo "- gnuplot is not installed: no chart $png" >>"$report"
        return
    fi
    gnuplot <<EOF || { echo "- gnuplot failed: no chart $png" >>"$report"; return; }
set terminal pngcairo size 1400,650 font "sans,11"
set output "$png"
set title "$title"
set datafile separator "\t"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [$ymin:*]
set ylabel "$ylabel"
set grid ytics
set key outside right top vertical
set xtics rotate by -35 nomirror
set arrow from graph 0, first $line to graph 1, first $line nohead lw 2 lc rgb "black" dt 2
plot for [i=2:$((${#CONFIGS[@]} + 1))] "$data" using i:xtic(1) title columnheader(i)
EOF
    echo "- chart: $png" >>"$report"
}

# table_data FUNCTION: tab-separated, a row per workload, a column per configuration, each cell
# the first word of FUNCTION CONFIG WORKLOAD
table_data() {
    printf 'workload'; for c in "${CONFIGS[@]}"; do printf '\t"%s"' "$(label "$c")"; done; echo
    for w in "${WORKLOADS[@]}"; do
        printf '"%s"' "$w"
        for c in "${CONFIGS[@]}"; do
            printf '\t%s' "$("$1" "$c" "$w" | cut -d' ' -f1)"
        done
        echo
    done
}
# the peak, at least 1 (the log scale shows no 0)
peak_at_least_1() { local p; p=$(peak_of "$1" "$2" | cut -d' ' -f1); [[ $p == - ]] || ((p >= 1)) || p=1; echo "$p"; }

table_data ratio_of >"$WORK/ratios.dat"
chart "$WORK/ratios.dat" "$chart" \
    "diofs benchmark ($TAG): time relative to the plain buffered directory (lower is better; log scale)" \
    "time / plain directory's time" 0.5 1
table_data peak_at_least_1 >"$WORK/peaks.dat"
chart "$WORK/peaks.dat" "$OUT/$TAG-peak.png" \
    "diofs benchmark ($TAG): peak growth of Cached during each step, KiB (lower is better; log scale)" \
    "peak Cached - Cached before, KiB" 1 1024

cat "$report"
echo "run.sh: report in $report" >&2
((FAILED == 0)) || die "a step failed or a result differed (see above)"

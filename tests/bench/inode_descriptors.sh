#!/bin/bash
# What the inode table's descriptor cache (issue 18, item 6) costs per request: a stat-heavy
# `find` over a directory of FILES files and a small-file read loop (`cat` of each file), through
# a diofs mount, for each daemon given (before and after the change), with medians of RUNS runs.
# Prints a Markdown table.
#
# usage: sudo DIOFS_BINARIES='before=/tmp/diofs-old after=build/diofs' tests/bench/inode_descriptors.sh
#
# Environment:
#   DIOFS_BINARIES  NAME=PATH pairs, one column each (default: after=build/diofs of this repository)
#   FILES           files in the directory (default 20000), of 1 KiB each
#   RUNS            runs of each measure per daemon (default 3)
#   MOUNT_OPTS      the mount's -o options (default entry_timeout=0,attr_timeout=0: every stat
#                   and open reaches the daemon, lookups included, instead of the kernel's
#                   caches; the cost measured is the daemon's)
#   WORK_PARENT     where the backing directory goes (default /var/tmp)
#
# The daemons get the script's descriptor limit (ulimit -Hn). One that holds a descriptor for
# each inode the kernel knows needs more than FILES: with FILES at or above the limit its `find`
# fails with EMFILE (issue 18, item 6), and the script stops.
#
# Each run mounts afresh (the kernel knows no inode of the mount yet), then measures:
#   find      find MNT/tree -type f -printf '%s\n'   (one lookup, or lookup and getattr, a file)
#   find again  the same, right after (the inodes known to the kernel, and to the daemon)
#   cat       every file of the directory read with cat, 500 per cat (xargs): lookup, open,
#             read, release of each
# and unmounts. The backing directory is read once first, so its inodes and pages are cached
# for every run. Times are wall-clock seconds; the column "per file" is the median divided by
# FILES. With FILES above the cache (at most 4096 descriptors), the second find reopens
# inodes the cache let go.
set -euo pipefail
BENCH_NAME=inode_descriptors
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

[[ $(id -u) == 0 ]] || die "run as root"
FILES=${FILES:-20000}
RUNS=${RUNS:-3}
MOUNT_OPTS=${MOUNT_OPTS:-entry_timeout=0,attr_timeout=0}
DIOFS_BINARIES=${DIOFS_BINARIES:-after=$here/../../build/diofs}

WORK=$(mktemp -d "${WORK_PARENT:-/var/tmp}/diofs-inode-bench.XXXXXX")
install_cleanup
mkdir -p "$WORK/backing/tree" "$WORK/mnt"
head -c $((FILES * 1024)) /dev/urandom >"$WORK/all"
split -b 1024 -d -a 7 "$WORK/all" "$WORK/backing/tree/f"
rm "$WORK/all"
find "$WORK/backing/tree" -type f -printf '%s\n' >/dev/null
cat "$WORK/backing/tree"/* >/dev/null

timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }
find_sizes() { find "$WORK/mnt/tree" -type f -printf '%s\n'; }
cat_all() { (cd "$WORK/mnt/tree" && find . -type f -print0 | xargs -0 -n 500 cat); }

# The daemons take turns within each run (before, after, before, after...), so that what else
# the machine does at some moment weighs on each alike.
declare -A results times
names=()
for pair in $DIOFS_BINARIES; do names+=("${pair%%=*}"); done
for ((r = 0; r < RUNS; r++)); do
    for pair in $DIOFS_BINARIES; do
        name=${pair%%=*}
        DIOFS_BINARY=${pair#*=}
        start_diofs "$WORK/backing" "$WORK/mnt" "$MOUNT_OPTS" "$name"
        times[$name,find]+=" $(timed find_sizes)"
        times[$name,find2]+=" $(timed find_sizes)"
        times[$name,cat]+=" $(timed cat_all)"
        [[ $(find_sizes | wc -l) == "$FILES" ]] || die "$name: find does not see $FILES files"
        stop_diofs "$WORK/mnt" "$DIOFS_PID"
        MOUNTS=()
    done
done
for name in "${names[@]}"; do
    for m in find find2 cat; do
        results[$name,$m]=$(echo "${times[$name,$m]}" | median 3)
    done
    echo "$name: find${times[$name,find]}; find again${times[$name,find2]}; cat${times[$name,cat]}" >&2
done

echo "$FILES files of 1 KiB, -o $MOUNT_OPTS, descriptor limit $(ulimit -Hn), median of $RUNS runs; $(nproc) CPUs, $(uname -r)"
echo
printf '| measure |'; for n in "${names[@]}"; do printf ' %s (s) | %s per file (µs) |' "$n" "$n"; done; echo
printf '|---|'; for n in "${names[@]}"; do printf -- '---:|---:|'; done; echo
for m in find find2 cat; do
    case $m in find) label='find (first)' ;; find2) label='find (again)' ;; cat) label='cat of each file' ;; esac
    printf '| %s |' "$label"
    for n in "${names[@]}"; do
        v=${results[$n,$m]}
        printf ' %s | %.1f |' "$v" "$(echo "$v * 1000000 / $FILES" | bc -l)"
    done
    echo
done

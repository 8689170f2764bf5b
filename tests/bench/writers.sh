#!/bin/bash
# Writers (issue 19): dd bs=4K and bs=16K of 128 MiB (conv=fsync) and tar x of 4 files of 32 MiB
# (the archive read with dd iflag=direct into tar -x, then sync of the four files), in the plain
# directory, through a diofs -o dbopt mount with its defaults (with libfuse 3.16+: the
# writeback window, 8 MiB), through -o dbopt,writeback=0 (writes coalesced in the daemon, as the
# libfuse 3.14 build does), and with Debian's nocache around the writer in the plain directory.
# Each cell: the median wall time of BENCH_RUNS runs and its ratio to the plain directory, and
# the largest page cache charged to the writer's own memory cgroup over the runs (writers.py).
# Prints a Markdown table.
#
# usage: sudo tests/bench/writers.sh
#
# Environment:
#   DIOFS_BINARY  the daemon (default: build/diofs of this repository, else diofs on $PATH)
#   BENCH_RUNS    runs of every cell (default 5)
#   WORK_PARENT   where the backing directories go (default /var/tmp)
#   BENCH_CONFIGS configurations, space-separated (default: plain dbopt dbopt-wb0 nocache)
#   BENCH_WORKLOADS  workloads, space-separated (default: dd-4K dd-16K tar-x)
#   BENCH_DBOPT_OPTS appended to the -o options of the dbopt mount (e.g. writeback=16M)
#   BENCH_NO_INSTALL 1: do not apt-get install nocache when it is missing
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=writers.sh
# shellcheck source=lib.sh
source "$here/lib.sh"
default_to_built_diofs
[[ $(id -u) == 0 ]] || die "needs root (mounts, memory cgroups, drop_caches)"
[[ -x "$DIOFS_BINARY" ]] || die "no diofs at '$DIOFS_BINARY' (set DIOFS_BINARY)"
[[ -d /sys/fs/cgroup/memory ]] || die "needs the cgroup v1 memory controller"
runs=${BENCH_RUNS:-5}
configs=${BENCH_CONFIGS:-plain dbopt dbopt-wb0 nocache}
workloads=${BENCH_WORKLOADS:-dd-4K dd-16K tar-x}
if [[ " $configs " == *" nocache "* ]] && ! command -v nocache >/dev/null; then
    if [[ "${BENCH_NO_INSTALL:-0}" != 1 ]] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y nocache >&2 || true
    fi
    command -v nocache >/dev/null || { echo "writers.sh: no nocache: its column is left out" >&2; configs=${configs//nocache/}; }
fi

WORK=$(mktemp -d "${WORK_PARENT:-/var/tmp}/diofs-writers.XXXXXX")
install_cleanup
mkdir "$WORK/input" "$WORK/plain"
for i in 1 2 3 4; do
    head -c $((32 << 20)) /dev/urandom >"$WORK/input/f$i"
done
tar -cf "$WORK/four.tar" -C "$WORK/input" .

# The directory a configuration's writer works in, mounting it first where it is a mount.
declare -A dirs
for config in $configs; do
    case $config in
        plain | nocache) dirs[$config]=$WORK/plain ;;
        dbopt | dbopt-wb0)
            mkdir "$WORK/$config-backing" "$WORK/$config"
            options=dbopt${BENCH_DBOPT_OPTS:+,$BENCH_DBOPT_OPTS}
            [[ $config == dbopt-wb0 ]] && options=dbopt,writeback=0
            start_diofs "$WORK/$config-backing" "$WORK/$config" "$options" "$config"
            dirs[$config]=$WORK/$config
            ;;
        *) die "unknown configuration '$config' (plain dbopt dbopt-wb0 nocache)" ;;
    esac
done

# The command of a workload in DIR, with PREFIX before the writer.
command_of() {
    local workload=$1 dir=$2 prefix=$3
    case $workload in
        dd-4K) echo "$prefix dd if=/dev/zero of=$dir/dd.out bs=4K count=32768 conv=fsync status=none" ;;
        dd-16K) echo "$prefix dd if=/dev/zero of=$dir/dd.out bs=16K count=8192 conv=fsync status=none" ;;
        tar-x) echo "mkdir $dir/tx && dd if=$WORK/four.tar iflag=direct bs=1M status=none | $prefix tar -xf - -C $dir/tx && sync $dir/tx/f*" ;;
        *) die "unknown workload '$workload' (dd-4K dd-16K tar-x)" ;;
    esac
}

declare -A seconds peaks
for workload in $workloads; do
    for config in $configs; do
        dir=${dirs[$config]}
        prefix=""
        [[ $config == nocache ]] && prefix=nocache
        times=() largest_peak=0
        for _ in $(seq "$runs"); do
            drop_caches
            read -r s kib < <(python3 "$here/writers.py" diofs-writers "$(command_of "$workload" "$dir" "$prefix")")
            times+=("$s")
            ((kib > largest_peak)) && largest_peak=$kib
            rm -rf "${dir:?}/dd.out" "${dir:?}/tx"
            sync
        done
        seconds[$workload,$config]=$(echo "${times[*]}" | median 3)
        peaks[$workload,$config]=$largest_peak
        echo "writers.sh: $workload $config: ${times[*]} s, peak page cache $largest_peak KiB" >&2
    done
done

label() { [[ $1 == dbopt && -n ${BENCH_DBOPT_OPTS:-} ]] && echo "dbopt,$BENCH_DBOPT_OPTS" || echo "$1"; }
echo "| writer | $(for c in $configs; do printf '%s | ' "$(label "$c")"; done)"
echo "| --- | $(for c in $configs; do printf -- '--- | '; done)"
for workload in $workloads; do
    cells=()
    for config in $configs; do cells+=("$config" "${seconds[$workload,$config]}"); done
    ratio_row "$workload, s (x plain)" 2 "${seconds[$workload,plain]:-}" "${cells[@]}"
    row="| peak page cache, KiB |"
    for config in $configs; do row+=" ${peaks[$workload,$config]} |"; done
    echo "$row"
done
echo
echo "$(uname -r), $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC'), $runs runs, $("$DIOFS_BINARY" --version 2>&1 | head -1)"

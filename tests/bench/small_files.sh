#!/bin/bash
# Many small files (issue 19): tar x of /usr/include and /usr/share/doc (about 15,800 entries),
# then find -size +1k, grep -r and rm -rf of the tree, in the plain directory, through a diofs
# -o dbopt mount with its defaults (with libfuse 3.16+: the writeback window) and through
# -o dbopt,writeback=0; then the floor under dbopt's promise (small_files_floor.py: each file
# on the device at its close, without FUSE) on the same filesystem.
# Each cell: the median wall time of BENCH_RUNS runs (caches dropped before each step) and its
# ratio to the plain directory. Prints a Markdown table.
#
# usage: sudo tests/bench/small_files.sh
#
# Environment:
#   DIOFS_BINARY   the daemon (default: build/diofs of this repository, else diofs on $PATH)
#   BENCH_RUNS     runs of every cell (default 3)
#   WORK_PARENT    where the backing directories go (default /var/tmp)
#   BENCH_CONFIGS  configurations, space-separated (default: plain dbopt dbopt-wb0)
#   BENCH_SOURCES  the trees archived (default: /usr/include /usr/share/doc)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=small_files.sh
# shellcheck source=lib.sh
source "$here/lib.sh"
default_to_built_diofs
[[ $(id -u) == 0 ]] || die "run as root (it drops caches and mounts)"
runs=${BENCH_RUNS:-3}
configs=${BENCH_CONFIGS:-plain dbopt dbopt-wb0}
read -r -a sources <<<"${BENCH_SOURCES:-/usr/include /usr/share/doc}"

WORK=$(mktemp -d "${WORK_PARENT:-/var/tmp}/diofs-small.XXXXXX")
install_cleanup
tar -cf "$WORK/tree.tar" "${sources[@]}" 2>/dev/null || true
entries=$(tar -tf "$WORK/tree.tar" | wc -l)

declare -A dirs
for config in $configs; do
    case $config in
        plain) mkdir "$WORK/plain" && dirs[$config]=$WORK/plain ;;
        dbopt | dbopt-wb0)
            mkdir "$WORK/$config-backing" "$WORK/$config"
            options=dbopt
            [[ $config == dbopt-wb0 ]] && options=dbopt,writeback=0
            start_diofs "$WORK/$config-backing" "$WORK/$config" "$options" "$config"
            dirs[$config]=$WORK/$config
            ;;
        *) die "unknown configuration '$config' (plain dbopt dbopt-wb0)" ;;
    esac
done

steps="tar-x find grep rm"
command_of() {
    local step=$1 dir=$2
    case $step in
        tar-x) echo "mkdir $dir/t && tar -xf $WORK/tree.tar -C $dir/t" ;;
        find) echo "find $dir/t -size +1k >/dev/null" ;;
        grep) echo "grep -r -c diofs-never-there $dir/t >/dev/null || true" ;;
        rm) echo "rm -rf $dir/t" ;;
    esac
}

declare -A seconds
declare -A all
for _ in $(seq "$runs"); do
    for config in $configs; do
        for step in $steps; do
            drop_caches
            start=$(now)
            bash -c "$(command_of "$step" "${dirs[$config]}")"
            s=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
            all[$step,$config]+="$s "
        done
        sync
    done
done
for step in $steps; do
    for config in $configs; do
        seconds[$step,$config]=$(echo "${all[$step,$config]}" | median 2)
        echo "small_files.sh: $step $config: ${all[$step,$config]}s" >&2
    done
done

echo "| step ($entries entries) | $(for c in $configs; do printf '%s | ' "$c"; done)"
echo "| --- | $(for c in $configs; do printf -- '--- | '; done)"
for step in $steps; do
    cells=()
    for config in $configs; do cells+=("$config" "${seconds[$step,$config]}"); done
    ratio_row "$step, s (x plain)" 1 "${seconds[$step,plain]:-}" "${cells[@]}"
done
echo
echo "The floor on the same filesystem, without FUSE (small_files_floor.py):"
python3 "$here/small_files_floor.py" "$WORK" "${sources[@]}"
echo
echo "$(uname -r), $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC'), $runs runs, $("$DIOFS_BINARY" --version 2>&1 | head -1)"

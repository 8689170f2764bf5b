#!/usr/bin/env bash
# Counts the FUSE requests that many small files cost, by kind: a tree of small files (by
# default /usr/include and /usr/share/doc, as a tarball) is unpacked into a diofs mount, then
# searched (find -size), read (grep -r) and removed (rm -rf). The daemon runs in the foreground
# with libfuse's debug log (-d), which names every request it receives; this script tallies them
# per step, per entry of the tree. What the kernel answered itself costs nothing and does not
# show; the debug log slows the daemon, so no time here is a speed (tests/bench/run.sh measures
# those).
#
#     sudo tests/bench/requests.sh                         # diofs -o dbopt and diofs without it
#     sudo DIOFS_BINARY=build/diofs TREE="/usr/include" CONFIGS="dbopt" tests/bench/requests.sh
#
# Prints one table per configuration: for each step, each kind of request with its count and
# its count per entry (files, directories and links of the tree).
set -euo pipefail
BENCH_NAME=requests.sh
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "needs root (mounts)"
DIOFS_BINARY=$(realpath "${DIOFS_BINARY:-/usr/local/bin/diofs}")
[ -x "$DIOFS_BINARY" ] || die "no diofs at $DIOFS_BINARY"
read -r -a tree <<<"${TREE:-/usr/include /usr/share/doc}"
read -r -a configs <<<"${CONFIGS:-dbopt plain}"

WORK=$(mktemp -d /var/tmp/diofs-requests.XXXXXX)
install_cleanup
tar cf "$WORK/tree.tar" --ignore-failed-read "${tree[@]}" 2>/dev/null || true
entries=$(tar tf "$WORK/tree.tar" | wc -l)
echo "requests.sh: $DIOFS_BINARY ($("$DIOFS_BINARY" --version | head -1)), ${tree[*]}: $entries entries"

# tally LOG FROM: the requests of LOG after its first FROM lines, by kind, most first.
tally() {
    tail -n +"$(($2 + 1))" "$1" | sed -n 's/.*opcode: \([A-Z_0-9]*\) .*/\1/p' | sort | uniq -c |
        sort -rn | awk -v n="$entries" '{ printf "    %-16s %8d  %6.2f per entry\n", $2, $1, $1 / n }'
}

for config in "${configs[@]}"; do
    src=$WORK/src-$config mnt=$WORK/mnt-$config log=$WORK/$config.log
    mkdir "$src" "$mnt"
    options=""
    [ "$config" = plain ] || options=$config
    MOUNTS+=("$mnt")
    "$DIOFS_BINARY" "$src" "$mnt" -d ${options:+-o "$options"} 2>"$log" &
    DAEMONS+=("$!")
    for _ in $(seq 100); do
        [[ $(findmnt -n -o FSTYPE --mountpoint "$mnt") == fuse.diofs ]] && break
        sleep 0.1
    done
    [[ $(findmnt -n -o FSTYPE --mountpoint "$mnt") == fuse.diofs ]] || die "diofs did not mount $mnt"
    echo
    echo "== ${config} =="
    for step in "tar x" "find -size" "grep -r" "rm -rf"; do
        drop_caches
        from=$(wc -l <"$log")
        case $step in
        "tar x") tar xf "$WORK/tree.tar" -C "$mnt" ;;
        "find -size") find "$mnt" -size +100k >/dev/null ;;
        "grep -r") grep -r -q -F "diofs-no-such-string" "$mnt" || true ;;
        "rm -rf") rm -rf "${mnt:?}"/* ;;
        esac
        sleep 1  # the FORGETs the step caused
        echo "  $step:"
        tally "$log" "$from"
    done
    stop_diofs "$mnt" "${DAEMONS[-1]}"
done

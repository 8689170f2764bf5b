#!/usr/bin/env bash
# The seed's experiment over a GlusterFS volume (issue 10): `cp` of a redo log, `gzip -1` of the
# copy and `gunzip` of that, in node A's plain gluster client mount and in a diofs
# `-o dbopt,entry_timeout=0` mount over it. The volume (two bricks, both client mounts, the
# settings of the cluster test) is made on this machine by tests/cluster/gluster_lib.sh, so the
# "server" (glusterd and the bricks) shares the machine with the client node: its processes are
# moved into a memory cgroup of their own, and the page cache of the client node is what the
# cgroup this script runs in (with the tools, the gluster clients and diofs) gains: its
# memory.stat `cache`, before and after each step and at its peak (sampled every 5 ms). Beside
# it, the bricks' files in the page cache (the server's side, fincore) and the time, with the
# `sync` after the command. Caches are dropped before each run, and the programs loaded again
# (on a tiny file in a tmpfs) before it is measured; the median of REPEAT runs.
# fincore of the client's or the mount's files would say nothing: opening a FUSE file (which
# fincore does) drops its pages.
#
# usage: sudo tests/bench/cluster_seed.sh   (SIZE_MIB=128, REPEAT=3, DIOFS_BINARY=build/diofs)
# Prints a Markdown table (and writes it to $BENCH_OUT/cluster-seed.md when BENCH_OUT is set).
# Everything it makes (the volume, its daemons, the mounts, the cgroups) goes on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SIZE_MIB=${SIZE_MIB:-128}
REPEAT=${REPEAT:-3}
DIOFS_BINARY=${DIOFS_BINARY:-$REPO/build/diofs}
export DIOFS_BINARY
E2E_TIMEOUT=${E2E_TIMEOUT:-3600}
# shellcheck source=../cluster/gluster_lib.sh
source "$REPO/tests/cluster/gluster_lib.sh"

# --- memory cgroups: the client node (this script and what it starts) and the server ---------
CG_PARENT=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
[[ -w "$CG_PARENT" ]] || skip "no cgroup v1 memory controller to write to at $CG_PARENT"
CG_CLIENT="$CG_PARENT/diofs-bench-client-$$"
CG_SERVER="$CG_PARENT/diofs-bench-server-$$"
mkdir "$CG_CLIENT" "$CG_SERVER"

# gl_after_teardown (called by gluster_lib.sh's exit trap once the cluster is gone): this shell
# back in its own cgroup, and the two cgroups removed.
gl_after_teardown() {
    echo $$ >"$CG_PARENT/cgroup.procs"
    rmdir "$CG_CLIENT" "$CG_SERVER" 2>/dev/null || note "cleanup: a cgroup still has processes"
}
echo $$ >"$CG_CLIENT/cgroup.procs"

# client_cache_kib: the client node's page cache (this script's cgroup, not its children), KiB.
client_cache_kib() { awk '$1 == "cache" { printf "%d\n", $2 / 1024 }' "$CG_CLIENT/memory.stat"; }
# brick_kib: the bricks' files in the page cache, KiB.
brick_kib() {
    find "$GL_DIR/bricks" -type f -not -path '*/.glusterfs/*' -print0 |
        xargs -0 -r fincore --bytes --noheadings --raw --output RES | awk '{ n += $1 } END { printf "%d\n", n / 1024 }'
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

gluster_start
for pid in "$GLUSTERD_PID" "${GL_BRICK_PIDS[@]}"; do echo "$pid" >"$CG_SERVER/cgroup.procs"; done
node_mount A dbopt,entry_timeout=0

make_redo "$CLIENT_A/redo.log" $((SIZE_MIB << 20)) 1
drop_caches

# step_command STEP: the command, run in the directory.
step_command() {
    case $1 in
        cp) echo "cp redo.log redo.copy" ;;
        gzip) echo "gzip -1 -c redo.copy > redo.copy.gz" ;;
        gunzip) echo "gunzip -c redo.copy.gz > redo.back" ;;
    esac
}

# warm_up: the programs of every step (and bash, sync, date) read back into memory after the
# caches were dropped, by the same commands on a 4 KiB file in a tmpfs, deleted at once: so
# the growth measured is the step's data, not its programs (1-3 MiB).
SCRATCH="$E2E_TMP/scratch"
mkdir "$SCRATCH"
track_mount "$SCRATCH"
mount -t tmpfs -o size=16M tmpfs "$SCRATCH"
warm_up() {
    local step
    head -c 4096 "$CLIENT_A/redo.log" >"$SCRATCH/redo.log"
    for step in cp gzip gunzip; do
        (cd "$SCRATCH" && bash -c "$(step_command "$step")" && sync && date >/dev/null)
    done
    rm -f "$SCRATCH"/*
}

# measure DIR STEP: one run; prints "seconds growth_kib peak_kib bricks_kib".
measure() {
    local dir=$1 step=$2 before after peak=0 start end sampler
    drop_caches
    warm_up
    before=$(client_cache_kib)
    ( while :; do client_cache_kib; sleep 0.005; done ) >"$E2E_TMP/samples" &
    sampler=$!
    start=$(date +%s.%N)
    (cd "$dir" && bash -c "$(step_command "$step")" && sync)
    end=$(date +%s.%N)
    kill "$sampler"
    wait "$sampler" 2>/dev/null || true
    after=$(client_cache_kib)
    peak=$(awk -v b="$before" 'BEGIN { m = 0 } { if ($1 - b > m) m = $1 - b } END { print m }' "$E2E_TMP/samples")
    echo "$(echo "$end - $start" | bc) $((after - before)) $peak $(brick_kib)"
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rows=()
for config in plain dbopt; do
    dir=$CLIENT_A
    [[ $config == dbopt ]] && dir=$MNT_A
    for step in cp gzip gunzip; do
        times="" growths="" peaks="" bricks=""
        for ((run = 1; run <= REPEAT; run++)); do
            read -r t g p b < <(measure "$dir" "$step")
            times+=" $t" growths+=" $g" peaks+=" $p" bricks+=" $b"
        done
        rows+=("| $step | $config | $(printf '%.2f' "$(median <<<"$times")") | $(median <<<"$growths") | $(median <<<"$peaks") | $(median <<<"$bricks") |")
        note "$config $step: times$times; growth$growths; peak$peaks; bricks$bricks"
    done
    cmp -s "$dir/redo.back" "$CLIENT_A/redo.log" || fail "$config: redo.back differs from redo.log"
    rm -f "$dir/redo.copy" "$dir/redo.copy.gz" "$dir/redo.back"
done

report=$(
    echo "- command: \`sudo SIZE_MIB=$SIZE_MIB REPEAT=$REPEAT tests/bench/cluster_seed.sh\` (DIOFS_BINARY=$DIOFS_BINARY)"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, kernel $(uname -r); diofs git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "- GlusterFS $(glusterfs --version | head -n 1 | awk '{ print $2 }'), a volume of two bricks (directories on $(findmnt -n -o FSTYPE --target "$GL_DIR")) on this machine; node A's client mount, and diofs -o dbopt,entry_timeout=0 on it"
    echo "- client node's page cache: growth (after the step and its sync) and peak of the page cache of the script's memory cgroup (tools, gluster clients, diofs; glusterd and the bricks are in another), KiB; bricks: their files in the page cache after the step (the server's side), KiB; medians of $REPEAT runs, caches dropped before each and the programs loaded again (on a 4 KiB file in a tmpfs)"
    echo
    echo "| step | client mount | time s | client page cache growth KiB | client page cache peak KiB | bricks' page cache KiB |"
    echo "|---|---|---:|---:|---:|---:|"
    printf '%s\n' "${rows[@]}"
)
echo "$report"
if [[ -n "${BENCH_OUT:-}" ]]; then
    mkdir -p "$BENCH_OUT"
    echo "$report" >"$BENCH_OUT/cluster-seed.md"
fi
node_unmount A

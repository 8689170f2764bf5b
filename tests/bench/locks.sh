#!/bin/bash
# What locks cost through a diofs mount, beside the plain directory (tests/bench/locks.py does
# the measuring): microseconds per uncontended fcntl lock or unlock, microseconds from a
# holder's unlock to the grant of a waiter blocked in F_SETLKW (median of HANDOFFS), and the
# daemon's CPU (milliseconds per second) and threads while PARKED waits are kept.
#
#     sudo tests/bench/locks.sh                          # diofs from $PATH
#     sudo DIOFS_BINARY=build/diofs tests/bench/locks.sh
#     sudo DIOFS_BINARY=build/diofs DIOFS_BASELINE=/path/to/older/diofs tests/bench/locks.sh
#
# Environment: PAIRS (20000), HANDOFFS (200), PARKED (1000), PARK_SECONDS (10), REPEAT (3: the
# figures are medians).
set -euo pipefail
BENCH_NAME=locks
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
[[ $(id -u) == 0 ]] || die "run as root (it mounts)"
DIOFS_BINARY=$(command -v "${DIOFS_BINARY:-diofs}") || die "no diofs binary"
DIOFS_BINARY=$(realpath "$DIOFS_BINARY")
PAIRS=${PAIRS:-20000} HANDOFFS=${HANDOFFS:-200} PARKED=${PARKED:-1000}
PARK_SECONDS=${PARK_SECONDS:-10} REPEAT=${REPEAT:-3}
WORK=$(mktemp -d /var/tmp/diofs-locks.XXXXXX)
install_cleanup

measure() {  # measure LABEL DIR [DAEMON PID]
    local label=$1 dir=$2 pid=${3:-} p=() h=() c=() t="" i out
    for ((i = 0; i < REPEAT; i++)); do
        p+=("$(python3 "$here/locks.py" pairs "$dir" "$PAIRS")")
        h+=("$(python3 "$here/locks.py" handoff "$dir" "$HANDOFFS")")
        if [[ -n $pid ]]; then
            # A descriptor for each wait, in the parking process only (not the daemon's limit).
            out=$(ulimit -Sn $((PARKED + 100)) &&
                python3 "$here/locks.py" park "$dir" "$PARKED" "$PARK_SECONDS" "$pid")
            c+=("${out%% *}")
            t=$(cut -d' ' -f2 <<<"$out")
        fi
    done
    printf '| %s | %s | %s | %s | %s |\n' "$label" "$(echo "${p[*]}" | median 1)" \
        "$(echo "${h[*]}" | median 0)" "${c[*]:+$(echo "${c[*]}" | median 1)}" "${t:--}"
}

echo "locks.sh: $(uname -r), $(nproc) CPUs; PAIRS=$PAIRS HANDOFFS=$HANDOFFS PARKED=$PARKED" \
    "PARK_SECONDS=$PARK_SECONDS REPEAT=$REPEAT; medians"
echo
echo "| where | µs per lock request | µs unlock → waiter's grant | daemon CPU ms/s, $PARKED waits kept | daemon threads then |"
echo "| --- | ---: | ---: | ---: | ---: |"
mkdir -p "$WORK/plain"
measure "plain directory ($(findmnt -n -o FSTYPE --target "$WORK"))" "$WORK/plain"
n=0
for binary in "$DIOFS_BINARY" ${DIOFS_BASELINE:+"$(realpath "$DIOFS_BASELINE")"}; do
    DIOFS_BINARY=$binary
    tag=diofs$((n += 1))
    mkdir -p "$WORK/$tag-backing" "$WORK/$tag-mnt"
    start_diofs "$WORK/$tag-backing" "$WORK/$tag-mnt" dbopt "$tag"
    measure "diofs -o dbopt ($binary)" "$WORK/$tag-mnt" "$DIOFS_PID"
    stop_diofs "$WORK/$tag-mnt" "$DIOFS_PID"
done

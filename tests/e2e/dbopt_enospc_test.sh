#!/usr/bin/env bash
# A full disk under dbopt: a writer of unaligned 100,000-byte records fills a small
# 4096-byte-sector loop file system through a dbopt mount.
# strict (-o dbopt,strict: every write on the device when it returns): the write that finds the
# disk full must fail with ENOSPC (never EINVAL, never a silent success), every byte reported
# written must be in the file, byte for byte, the file's size must be what was reported, and
# fsync and close must report no error that was not the caller's.
# coalescing (the default options: writes held back and written out later): the disk found full
# by a writeout must surface as ENOSPC at a later write, at fsync or at close (at least one of
# them fails, and never with another error), and the file holds a prefix of the records, byte for
# byte, no longer than what the writes took.
# Either way, once space is freed, writing works again.
# Usage: dbopt_enospc_test.sh xfs|ext4 strict|coalescing
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
fstype=${1:?usage: dbopt_enospc_test.sh xfs|ext4 strict|coalescing}
mode=${2:?usage: dbopt_enospc_test.sh xfs|ext4 strict|coalescing}
size_mib=64
[[ $fstype == xfs ]] && size_mib=320  # mkfs.xfs refuses less than 300 MiB
case $mode in
    strict) options=dbopt,strict ;;
    coalescing) options=dbopt ;;
    *) fail "unknown mode '$mode' (strict or coalescing)" ;;
esac

e2e_loop_fs "$fstype" "$E2E_TMP/small" "$size_mib" 4096
mnt=$E2E_TMP/mnt
mkdir "$mnt"
diofs_mount "$E2E_TMP/small" "$mnt" "$options"

# fill PATH: writes pseudo-random 100,000-byte records until a write fails; prints
# "<bytes written> <errno name of the failing write> <fsync result> <close result>".
fill() {
    python3 - "$1" <<'PY'
import errno, os, random, sys
rng = random.Random(5)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
written, failure = 0, "none"
while True:
    record = rng.randbytes(100000)
    try:
        n = os.write(fd, record)
    except OSError as e:
        failure = errno.errorcode[e.errno]
        break
    written += n
    if n < len(record):
        continue  # a short write: the next one says why
def outcome(call):
    try:
        call()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print(written, failure, outcome(lambda: os.fsync(fd)), outcome(lambda: os.close(fd)))
PY
}

# expected PATH BYTES: the first BYTES of the same record stream.
expected() {
    python3 - "$1" "$2" <<'PY'
import random, sys
rng = random.Random(5)
left = int(sys.argv[2])
with open(sys.argv[1], "wb") as f:
    while left > 0:
        record = rng.randbytes(100000)
        f.write(record[:left])
        left -= len(record)
PY
}

read -r written failure synced closed < <(fill "$mnt/fill")
note "wrote $written bytes before $failure; fsync: $synced, close: $closed"
if [[ $mode == strict ]]; then
    assert_eq ENOSPC "$failure" "the error of the write that found the disk full"
    ((written > size_mib * 1024 * 1024 / 2)) || fail "only $written bytes written on a $size_mib MiB file system"
    assert_eq ok "$synced" "fsync after ENOSPC (every byte reported written was written)"
    assert_eq ok "$closed" "close after ENOSPC"
    assert_eq "$written" "$(stat -c %s "$mnt/fill")" "the size of the file through the mount"
    assert_eq "$written" "$(stat -c %s "$E2E_TMP/small/fill")" "the size of the backing file"
    expected "$E2E_TMP/expected" "$written"
    assert_same_files "$E2E_TMP/expected" "$mnt/fill" "the bytes reported written, through the mount"
    assert_same_files "$E2E_TMP/expected" "$E2E_TMP/small/fill" "the bytes reported written, in the backing file"
    ok "a full $fstype file system: ENOSPC at the write that found it full, and no written byte lost"
else
    [[ $failure == ENOSPC || $synced == ENOSPC || $closed == ENOSPC ]] ||
        fail "the disk filled up and no write, fsync or close said so (write: $failure, fsync: $synced, close: $closed)"
    for outcome in "$failure" "$synced" "$closed"; do
        [[ $outcome == none || $outcome == ok || $outcome == ENOSPC ]] ||
            fail "an error other than ENOSPC: $outcome (write: $failure, fsync: $synced, close: $closed)"
    done
    kept=$(stat -c %s "$E2E_TMP/small/fill")
    ((kept <= written)) || fail "the backing file has $kept bytes, more than the $written the writes took"
    ((kept > size_mib * 1024 * 1024 / 2)) || fail "only $kept bytes kept on a $size_mib MiB file system"
    assert_eq "$kept" "$(stat -c %s "$mnt/fill")" "the size of the file through the mount, once closed"
    expected "$E2E_TMP/expected" "$kept"
    assert_same_files "$E2E_TMP/expected" "$mnt/fill" "the bytes kept, through the mount"
    assert_same_files "$E2E_TMP/expected" "$E2E_TMP/small/fill" "the bytes kept, in the backing file"
    ok "a full $fstype file system with coalescing: ENOSPC at a write, fsync or close, and the file a prefix of what was written ($kept of $written bytes)"
fi

rm "$mnt/fill"
read -r written failure synced closed < <(fill "$mnt/again")
note "again: wrote $written bytes before $failure; fsync: $synced, close: $closed"
kept=$written
if [[ $mode == strict ]]; then
    assert_eq ENOSPC "$failure" "the error when the disk is full again"
else
    [[ $failure == ENOSPC || $synced == ENOSPC || $closed == ENOSPC ]] ||
        fail "the disk filled up again and no write, fsync or close said so"
    kept=$(stat -c %s "$E2E_TMP/small/again")
fi
((kept > size_mib * 1024 * 1024 / 2)) || fail "after freeing the space only $kept bytes could be written"
expected "$E2E_TMP/expected" "$kept"
assert_same_files "$E2E_TMP/expected" "$mnt/again" "the second fill, through the mount"
ok "after rm, the space is usable again through the mount"

pid_alive "$DIOFS_PID" || fail "the daemon died"
diofs_unmount "$mnt" "$DIOFS_PID"
ok "the daemon ends cleanly after the disk was full"

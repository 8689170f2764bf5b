#!/usr/bin/env bash
# A full archive destination under dbopt: an archiver writes unaligned 100,000-byte records
# through a dbopt mount onto a small 4096-byte-sector loop file system, in both modes
# (strict: every write on the device when it returns; coalescing, the default: writes held
# back and written out later). Whatever the mode, the promise is the same as a local
# filesystem's with delayed allocation: ENOSPC comes from the write whose bytes cannot be
# stored, and every byte a write acknowledged is in the file.
#
# 1. Without retry: records until a write fails. It must fail with ENOSPC (never EINVAL, never
#    another error); after every acknowledged write, stat through the mount shows at least the
#    bytes acknowledged so far (the size never shrinks); reading the file back through the
#    mount, before and after close, gives every acknowledged byte; fsync and close succeed;
#    the backing file is the same, byte for byte.
# 2. The classic archive failure: the disk is nearly full of filler files; the archiver writes
#    records, and on ENOSPC the operator deletes a filler and the archiver retries the same
#    write. The file ends up equal to every record, byte for byte (no zeros where
#    acknowledged bytes were), fsync and close succeed, and no write failed with anything but
#    ENOSPC.
# On ext2 (no extents, so no fallocate: room cannot be reserved) the daemon holds bytes back
# only while the free space is more than what it holds, and writes through otherwise: the same
# promises hold.
# The writeback window (window: -o dbopt,writeback=8M) keeps the same promises: the room is
# reserved ahead of the kernel's dirty pages, and a failed reservation fails the next write().
# Usage: dbopt_enospc_test.sh xfs|ext4|ext2 strict|coalescing|window
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
fstype=${1:?usage: dbopt_enospc_test.sh xfs|ext4|ext2 strict|coalescing}
mode=${2:?usage: dbopt_enospc_test.sh xfs|ext4|ext2 strict|coalescing|window}
size_mib=64
[[ $fstype == xfs ]] && size_mib=320  # mkfs.xfs refuses less than 300 MiB
case $mode in
    strict) options=dbopt,strict ;;
    coalescing) options=dbopt,writeback=0 ;;  # held back in the daemon
    window) options=dbopt,writeback=8M ;;  # the kernel's page cache takes the writes
    *) fail "unknown mode '$mode' (strict, coalescing or window)" ;;
esac

e2e_loop_fs "$fstype" "$E2E_TMP/small" "$size_mib" 4096
mnt=$E2E_TMP/mnt
mkdir "$mnt"
diofs_mount "$E2E_TMP/small" "$mnt" "$options"

# archive MODE PATH [FILLERS_DIR]: writes the deterministic record stream (seed 5) to PATH
# through the mount and checks, as it goes, what the header says. MODE "once" stops at the
# first failed write; MODE "retry" deletes a file of FILLERS_DIR after each ENOSPC and retries
# the same bytes, until 12 MiB are written. Prints "<bytes acknowledged> <ENOSPCs seen>", or
# "FAIL: why" and exits 1.
archive() {
    python3 - "$@" <<'PY'
import errno, os, random, sys
mode, path = sys.argv[1], sys.argv[2]
fillers = sys.argv[3] if len(sys.argv) > 3 else None
target = 12 << 20

def fail(why):
    print("FAIL: " + why)
    sys.exit(1)

rng = random.Random(5)
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
acknowledged = 0
stream = bytearray()   # every byte a write acknowledged, in order
enospc = 0
pending = b""
while True:
    if not pending:
        if mode == "retry" and acknowledged >= target:
            break
        pending = rng.randbytes(100000)
    try:
        n = os.write(fd, pending)
    except OSError as e:
        if e.errno != errno.ENOSPC:
            fail("write at %d failed with %s, not ENOSPC" % (acknowledged, errno.errorcode[e.errno]))
        enospc += 1
        if mode == "once":
            break
        names = sorted(os.listdir(fillers))
        if not names:
            fail("ENOSPC at %d with every filler deleted" % acknowledged)
        os.unlink(os.path.join(fillers, names[0]))
        continue  # the same bytes again
    if n <= 0 or n > len(pending):
        fail("write returned %d for %d bytes" % (n, len(pending)))
    stream += pending[:n]
    acknowledged += n
    pending = pending[n:]
    size = os.stat(path).st_size
    if size < acknowledged:
        fail("stat through the mount shows %d bytes after %d were acknowledged" % (size, acknowledged))
    size = os.fstat(fd).st_size
    if size < acknowledged:
        fail("fstat shows %d bytes after %d were acknowledged" % (size, acknowledged))

def same_as_stream(what, got):
    if got == bytes(stream):
        return
    i = next((k for k in range(min(len(got), len(stream))) if got[k] != stream[k]), min(len(got), len(stream)))
    zeros = got[i:i + 4096].count(0)
    fail("%s: %d bytes, %d acknowledged, first difference at %d (%d zero bytes in the next 4 KiB)"
         % (what, len(got), len(stream), i, zeros))

try:
    back = os.pread(fd, len(stream) + 1, 0)
    while len(back) < len(stream) + 1:
        more = os.pread(fd, len(stream) + 1 - len(back), len(back))
        if not more:
            break
        back += more
except OSError as e:
    fail("reading the file back before close: %s" % errno.errorcode[e.errno])
same_as_stream("read back before close", back)
for name, call in (("fsync", lambda: os.fsync(fd)), ("close", lambda: os.close(fd))):
    try:
        call()
    except OSError as e:
        fail("%s after %d acknowledged bytes: %s" % (name, acknowledged, errno.errorcode[e.errno]))
with open(path, "rb") as f:
    same_as_stream("read back after close", f.read())
print(acknowledged, enospc)
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

# 1. Without retry.
result=$(archive once "$mnt/fill") || fail "without retry: ${result#FAIL: }"
read -r written enospc <<<"$result"
note "without retry: $written bytes acknowledged before ENOSPC"
assert_eq 1 "$enospc" "the writer stops at ENOSPC"
((written > size_mib * 1024 * 1024 / 2)) || fail "only $written bytes written on a $size_mib MiB file system"
assert_eq "$written" "$(stat -c %s "$mnt/fill")" "the size of the file through the mount"
assert_eq "$written" "$(stat -c %s "$E2E_TMP/small/fill")" "the size of the backing file"
expected "$E2E_TMP/expected" "$written"
assert_same_files "$E2E_TMP/expected" "$E2E_TMP/small/fill" "the acknowledged bytes, in the backing file"
ok "a full $fstype file system ($mode): ENOSPC at the write that found it full, every acknowledged byte kept"
rm "$mnt/fill"

# 2. Nearly full; on ENOSPC a filler is deleted and the same write retried.
fillers=$E2E_TMP/small/fillers
mkdir "$fillers"
i=0
# Written, not fallocated: ext2 has no fallocate.
while head -c 1M /dev/zero >"$fillers/$(printf %04d $i)" 2>/dev/null && sync -f "$fillers"; do
    i=$((i + 1))
done
rm -f "$fillers/$(printf %04d $i)"
# About 1.5 MiB free: the archive fills it within the first records.
for victim in "$fillers/0000" "$fillers/0001"; do rm "$victim"; done
sync -f "$E2E_TMP/small"
note "$i fillers of 1 MiB, $(($(stat -f -c '%f * %S' "$E2E_TMP/small"))) bytes free"
result=$(archive retry "$mnt/archive" "$fillers") || fail "with retries: ${result#FAIL: }"
read -r written enospc <<<"$result"
note "with retries: $written bytes acknowledged, ENOSPC $enospc times"
((enospc >= 3)) || fail "the disk was full only $enospc times: the test did not test it"
expected "$E2E_TMP/expected" "$written"
assert_same_files "$E2E_TMP/expected" "$mnt/archive" "every acknowledged byte after retries, through the mount"
assert_same_files "$E2E_TMP/expected" "$E2E_TMP/small/archive" "every acknowledged byte after retries, in the backing file"
ok "ENOSPC, a filler deleted, the same write retried ($enospc times on $fstype, $mode): the file is every record"

pid_alive "$DIOFS_PID" || fail "the daemon died"
diofs_unmount "$mnt" "$DIOFS_PID"
ok "the daemon ends cleanly after the disk was full"

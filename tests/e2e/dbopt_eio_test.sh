#!/usr/bin/env bash
# The disk under a dbopt mount fails (EIO: an xfs loop file system is shut down with xfs_io,
# as it shuts itself down on a metadata I/O error) while a writer has bytes held back:
# - the failure reaches the program: the next write, fsync and close return EIO, and keep
#   returning it (the open file stays in error: nothing written later can land beyond bytes
#   that were dropped); under strict, the write and fsync return it;
# - a writeout that fails is logged when it fails (the file, the offset, the error), before
#   anybody asks;
# - the daemon goes on: another file of the same mount reports its own errors, and the daemon
#   unmounts and exits 0.
# In the writeback window (window: -o dbopt,writeback=8M) the first write after the failure
# may still be taken into the kernel's page cache (the bytes are the kernel's until it writes
# them back), so it may succeed; fsync fails, and from then on every write, fsync and the close
# of the file fail too.
# Usage: dbopt_eio_test.sh strict|coalescing|window
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
mode=${1:?usage: dbopt_eio_test.sh strict|coalescing|window}
case $mode in
    strict) options=dbopt,strict ;;
    coalescing) options=dbopt,writeback=0 ;;  # held back in the daemon
    window) options=dbopt,writeback=8M ;;
    *) fail "unknown mode '$mode' (strict, coalescing or window)" ;;
esac
command -v xfs_io >/dev/null || skip "xfs_io is not installed"

e2e_loop_fs xfs "$E2E_TMP/disk" 320 4096
mnt=$E2E_TMP/mnt
mkdir "$mnt"
diofs_mount "$E2E_TMP/disk" "$mnt" "$options"
log=$DIOFS_LOG
if [[ $mode == window ]]; then
    # A libfuse older than 3.16 (the second build) has no window: writes stay requests.
    for _ in $(seq 100); do grep -q "writeback:" "$log" && break; sleep 0.05; done
    if grep -q "has no HANDLE_KILLPRIV_V2" "$log"; then
        note "this build has no writeback window: expecting what coalescing does"
        mode=coalescing
    fi
fi

# Writes 2.5 MiB of 100,000-byte records (in coalescing mode the last half chunk is held back),
# shuts the disk down, then prints what each later call said, one "call=result" a line.
result=$(python3 - "$mnt/archive" "$E2E_TMP/disk" "$log" <<'PY'
import errno, os, random, subprocess, sys
path, disk, log = sys.argv[1], sys.argv[2], sys.argv[3]
rng = random.Random(7)
# Started before the file is opened: a child forked later would close its copy of the
# descriptor at exec, and that close (a FUSE flush) would write out what is held.
shutdown = subprocess.Popen(["sh", "-c", 'read go && exec xfs_io -x -c shutdown "$0"', disk],
                            stdin=subprocess.PIPE)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for _ in range(26):
    os.write(fd, rng.randbytes(100000))
shutdown.communicate(b"go\n")
if shutdown.returncode != 0:
    sys.exit("xfs_io shutdown failed")
def outcome(name, call):
    try:
        call()
        print(name + "=ok")
    except OSError as e:
        print(name + "=" + errno.errorcode[e.errno])
record = rng.randbytes(100000)
outcome("write", lambda: os.write(fd, record))
outcome("fsync", lambda: os.fsync(fd))
with open(log, errors="replace") as f:
    print("logged_before_close=" + ("yes" if "failed: Input/output error" in f.read() else "no"))
outcome("write_again", lambda: os.write(fd, record))
outcome("fsync_again", lambda: os.fsync(fd))
outcome("close", lambda: os.close(fd))
# Another file of the same mount: its own error, the daemon still answers.
outcome("other_create", lambda: os.close(os.open(path + ".2", os.O_WRONLY | os.O_CREAT, 0o644)))
outcome("stat_mount_root", lambda: os.stat(os.path.dirname(path)))
PY
) || fail "the writer failed: $result"
note "$(tr '\n' ' ' <<<"$result")"
get() { sed -n "s/^$1=//p" <<<"$result"; }
if [[ $mode == window ]]; then
    [[ $(get write) == ok || $(get write) == EIO ]] || fail "the write after the disk failed: $(get write)"
else
    assert_eq EIO "$(get write)" "the write after the disk failed"
fi
assert_eq EIO "$(get fsync)" "fsync after the disk failed"
assert_eq EIO "$(get write_again)" "a second write after the failure"
assert_eq EIO "$(get fsync_again)" "a second fsync after the failure"
if [[ $mode == window ]]; then
    assert_eq EIO "$(get close)" "close of the file whose written-back bytes were lost"
    assert_contains "$(cat "$log")" "a write back of" "the log names the write back that failed"
fi
if [[ $mode == coalescing ]]; then
    assert_eq EIO "$(get close)" "close of the file whose held bytes were lost"
    assert_eq yes "$(get logged_before_close)" "the failed writeout in the log before close"
    assert_contains "$(cat "$log")" "bytes held for" "the log names the range that was dropped"
fi
assert_eq ok "$(get stat_mount_root)" "the daemon still answers after the failure"
ok "EIO under $mode: reported by write, fsync$([[ $mode != strict ]] && echo ' and close'), again and again"

pid_alive "$DIOFS_PID" || fail "the daemon died"
diofs_unmount "$mnt" "$DIOFS_PID"
ok "the daemon ends cleanly after the disk failed"

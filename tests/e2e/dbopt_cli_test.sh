#!/bin/bash
# The direct-I/O alignment on the command line and in the log: a bad -o dio_align is refused
# at startup (status 1, a message naming dio_align, no mount); -o dbopt,dio_align=4096 works;
# the mount log names the discovered alignment: the logical sector size of the machine's file
# system under /tmp (512 here), and 4096 on a loop device with 4096-byte sectors.

E2E_TIMEOUT=${E2E_TIMEOUT:-60}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

src=$E2E_TMP/backing
mnt=$E2E_TMP/mnt
mkdir "$src" "$mnt" "$E2E_TMP/mnt-4096" "$E2E_TMP/mnt-tmp" "$E2E_TMP/mnt-loop"
echo "through the mount" >"$src/hello"

# --- bad values ------------------------------------------------------------------------------
refused dio_align 1000 "power of two" -- "$src" "$mnt" -o dbopt,dio_align=1000
refused dio_align 256 "at least 512" -- "$src" "$mnt" -o dbopt,dio_align=256
refused dio_align abc "not a number" -- "$src" "$mnt" -o dbopt,dio_align=abc
refused dio_align -- "$src" "$mnt" -o dbopt,dio_align=
refused dio_align -- "$src" "$mnt" -o dbopt,dio_align=-512
refused dio_align -- "$src" "$mnt" -o dbopt,dio_align=0
refused dio_align -- "$src" "$mnt" -o dbopt,dio_align=4096x
refused dio_align "at most" -- "$src" "$mnt" -o dbopt,dio_align=2097152
refused dio_align -- "$src" "$mnt" -o dio_align=1000
assert_eq "through the mount" "$(cat "$src/hello")" "the backing file after the refusals"

# alignment_line LOG SRC: the log line that names the direct-I/O alignment of SRC.
alignment_line() { grep -F "direct-I/O alignment of $2:" "$1" || true; }

# odd_file_roundtrip MNT SRC: a file with an odd size written through the mount reads back
# identical, in the mount and in the backing directory, and leaves no page in the page cache.
odd_file_roundtrip() {
    local m=$1 s=$2
    head -c $((3 * 1024 * 1024 + 4097)) /dev/urandom >"$E2E_TMP/odd"
    cp "$E2E_TMP/odd" "$m/odd"
    printf 'patched' | dd of="$m/odd" bs=1 seek=5000 conv=notrunc status=none
    printf 'patched' | dd of="$E2E_TMP/odd" bs=1 seek=5000 conv=notrunc status=none
    assert_same_files "$E2E_TMP/odd" "$m/odd" "an odd-sized file through the mount"
    if command -v fincore >/dev/null; then
        assert_eq 0 "$(fincore --noheadings --raw --output PAGES "$s/odd")" \
            "resident pages of the backing file $s/odd"
    fi
    assert_same_files "$E2E_TMP/odd" "$s/odd" "an odd-sized file in the backing directory"
}

# --- -o dbopt,dio_align=4096 on the machine's file system ------------------------------------
# (Each mount has its own mount point, hence its own log: $E2E_TMP/<mount point's name>.log.)
diofs_mount "$src" "$E2E_TMP/mnt-4096" dbopt,dio_align=4096
line=$(alignment_line "$DIOFS_LOG" "$src")
assert_contains "$line" "direct-I/O alignment of $src: 4096 bytes" "the log of -o dbopt,dio_align=4096"
assert_contains "$line" "dio_align option" "the source of the alignment with -o dio_align=4096"
assert_eq "through the mount" "$(cat "$E2E_TMP/mnt-4096/hello")" "a file read with dio_align=4096"
odd_file_roundtrip "$E2E_TMP/mnt-4096" "$src"
diofs_unmount "$E2E_TMP/mnt-4096" "$DIOFS_PID"
ok "-o dbopt,dio_align=4096 mounts, logs 4096 bytes, and serves an odd-sized file correctly"

# --- the discovered alignment under /tmp -----------------------------------------------------
# The logical sector size of the block device under $E2E_TMP (512 on this machine's ext4).
dev=$(stat -c '%Hd:%Ld' "$src")
sector=$(cat "/sys/dev/block/$dev/queue/logical_block_size" 2>/dev/null ||
    cat "/sys/dev/block/$dev/../queue/logical_block_size" 2>/dev/null || true)
diofs_mount "$src" "$E2E_TMP/mnt-tmp" dbopt
line=$(alignment_line "$DIOFS_LOG" "$src")
[[ -n "$line" ]] || fail "no 'direct-I/O alignment of $src' line in the log: $(cat "$DIOFS_LOG")"
note "$(findmnt -n -o FSTYPE --target "$src") on device $dev, logical sector size ${sector:-unknown}; log: ${line#*info: }"
if [[ -n "$sector" ]]; then
    assert_contains "$line" "direct-I/O alignment of $src: $sector bytes" \
        "the alignment logged for $src (the device's logical sector size is $sector)"
else
    note "$src is on no block device: the logged alignment is not checked"
fi
odd_file_roundtrip "$E2E_TMP/mnt-tmp" "$src"
diofs_unmount "$E2E_TMP/mnt-tmp" "$DIOFS_PID"
ok "the log names the alignment of $src: ${sector:-?} bytes"

# --- the discovered alignment on a 4096-byte-sector loop device ------------------------------
loopfs=$E2E_TMP/loopfs
e2e_loop_fs ext4 "$loopfs" 64 4096
assert_eq 4096 "$(blockdev --getss "$E2E_LOOP")" "logical sector size of $E2E_LOOP"
mkdir "$loopfs/src"
echo "on the loop device" >"$loopfs/src/hello"
diofs_mount "$loopfs/src" "$E2E_TMP/mnt-loop" dbopt
line=$(alignment_line "$DIOFS_LOG" "$loopfs/src")
assert_contains "$line" "direct-I/O alignment of $loopfs/src: 4096 bytes" \
    "the alignment logged for ext4 on a 4096-byte-sector loop device"
assert_eq "on the loop device" "$(cat "$E2E_TMP/mnt-loop/hello")" "a file read on the loop device"
odd_file_roundtrip "$E2E_TMP/mnt-loop" "$loopfs/src"
diofs_unmount "$E2E_TMP/mnt-loop" "$DIOFS_PID"
umount "$loopfs"  # (the cleanup detaches the loop device)
ok "the log names 4096 bytes for a 4096-byte-sector loop device"

no_mount_left "the whole test"

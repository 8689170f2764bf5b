#!/bin/bash
# -o io_uring. Built against libfuse 3.14: refused at startup (status 1, a message naming
# io_uring and the libfuse), nothing mounted. Built against 3.18: with the fuse module's
# enable_uring off, the mount works over /dev/fuse and the log says why; with it on, the log
# says the requests come over io_uring, and a dbopt file written and read in small requests
# is right in the mount and in the backing directory, with no page of it cached. The module
# parameter is set for the test and put back as it was at the end (it only matters to mounts
# asking for io_uring, which no other test makes).

E2E_TIMEOUT=${E2E_TIMEOUT:-60}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

src=$E2E_TMP/backing
mnt=$E2E_TMP/mnt
mkdir "$src" "$mnt" "$E2E_TMP/mnt-off" "$E2E_TMP/mnt-on"
echo "through the mount" >"$src/hello"

minor=$("$DIOFS_BINARY" --version | sed -n 's/.*(libfuse 3\.\([0-9]*\)).*/\1/p')
[[ -n "$minor" ]] || fail "no libfuse version in: $("$DIOFS_BINARY" --version)"
if ((minor < 18)); then
    refused "io_uring: this diofs is built with libfuse 3.$minor" "3.18" -- \
        "$src" "$mnt" -o dbopt,io_uring
    exit 0
fi

parameter=/sys/module/fuse/parameters/enable_uring
[[ -w $parameter ]] || skip "this kernel has no $parameter (FUSE over io_uring)"
was=$(cat "$parameter")
trap 'status=$?; echo "$was" >"$parameter"; (exit $status); e2e_cleanup' EXIT

# small_io_roundtrip MNT: a file with an odd size, written and read in 4 KiB requests, is the
# same in the mount and in the backing directory, and no page of the backing file is cached.
small_io_roundtrip() {
    local m=$1
    head -c $((3 * 1024 * 1024 + 4097)) /dev/urandom >"$E2E_TMP/odd"
    dd if="$E2E_TMP/odd" of="$m/odd" bs=4K status=none
    assert_same_files "$E2E_TMP/odd" "$m/odd" "an odd-sized file written in 4 KiB requests"
    dd if="$m/odd" of="$E2E_TMP/back" bs=4K status=none
    assert_same_files "$E2E_TMP/odd" "$E2E_TMP/back" "the same file read in 4 KiB requests"
    if command -v fincore >/dev/null; then
        assert_eq 0 "$(fincore --noheadings --raw --output PAGES "$src/odd")" \
            "resident pages of the backing file $src/odd"
    fi
    assert_same_files "$E2E_TMP/odd" "$src/odd" "the file in the backing directory"
    rm "$m/odd"
}

echo 0 >"$parameter"
diofs_mount "$src" "$E2E_TMP/mnt-off" dbopt,io_uring
assert_contains "$(cat "$DIOFS_LOG")" "requests go through /dev/fuse" "the log with enable_uring off"
assert_eq "through the mount" "$(cat "$E2E_TMP/mnt-off/hello")" "a file read with enable_uring off"
diofs_unmount "$E2E_TMP/mnt-off" "$DIOFS_PID"
ok "enable_uring off: -o io_uring mounts over /dev/fuse and the log says why"

echo 1 >"$parameter"
diofs_mount "$src" "$E2E_TMP/mnt-on" dbopt,io_uring
assert_contains "$(cat "$DIOFS_LOG")" "requests come over io_uring" "the log with enable_uring on"
assert_not_contains "$(cat "$DIOFS_LOG")" "/dev/fuse" "the log with enable_uring on"
small_io_roundtrip "$E2E_TMP/mnt-on"
diofs_unmount "$E2E_TMP/mnt-on" "$DIOFS_PID"
ok "enable_uring on: requests over io_uring; a file written and read in 4 KiB requests is right, uncached"

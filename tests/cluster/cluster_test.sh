#!/usr/bin/env bash
# diofs on two "nodes" over one GlusterFS volume: a private glusterd, a volume, two client
# mounts (A and B) and a diofs -o dbopt mount on each (gluster_lib.sh); then what one node does
# is checked from the other: close-to-open contents and sizes (also after B read an older
# version), directory listings, rename and unlink, flock and POSIX locks both ways, a writer on
# A beside a reader on B, files made by dd, cp and gzip through A compared through B and
# through the plain client mounts;
# then the same mounts with -o dbopt,strict, where a write on A that returned is read on B.
# Needs root, /dev/fuse, glusterfs-server and glusterfs-client, python3, gzip; skips (exit 77)
# where GlusterFS cannot start, and fails instead under CI=true.
# Each check is a function check_*; add one and call it below.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
E2E_TIMEOUT=${E2E_TIMEOUT:-300}
# shellcheck source=gluster_lib.sh
source "$HERE/gluster_lib.sh"
CROSSNODE="$HERE/crossnode.py"

# ---------------------------------------------------------------------------------------------
# Helpers

# same_through WHAT REFERENCE NAME DIR...: the file NAME read (by a new open) through each DIR
# is REFERENCE, byte for byte, and stat there says its size.
same_through() {
    local what=$1 reference=$2 name=$3 dir
    shift 3
    for dir in "$@"; do
        assert_eq "$(stat -c %s "$reference")" "$(stat -c %s "$dir/$name")" \
            "$what: size of $name through $dir"
        assert_eq "$(stat -c %s "$reference")" "$(wc -c <"$dir/$name")" \
            "$what: bytes read of $name through $dir"
        assert_same_files "$reference" "$dir/$name" "$what: $name read through $dir"
    done
}

# listing DIR: the names in DIR, sorted, on one line.
listing() { (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | tr '\n' ' '); }

# reference NAME SIZE SEED: a file of the seed's redo-log-like bytes in $E2E_TMP/ref, in REF.
reference() {
    mkdir -p "$E2E_TMP/ref"
    REF="$E2E_TMP/ref/$1"
    make_redo "$REF" "$2" "$3"
}

# ---------------------------------------------------------------------------------------------
# Checks (each on $MNT_A and $MNT_B, in a directory of its own)

# check_close_to_open: a file written and closed on A is read whole and current by an open on
# B, whatever version B read before: shorter, overwritten in place, longer, replaced by rename.
check_close_to_open() {
    local d=c2o v
    mkdir "$MNT_A/$d"
    reference v1 3000000 11
    cp "$REF" "$MNT_A/$d/f"
    same_through "close-to-open, first version" "$REF" "$d/f" "$MNT_B" "$MNT_A"
    reference v2 2000000 12   # shorter: B must not see the old size
    cp "$REF" "$MNT_A/$d/f"
    same_through "close-to-open, shorter rewrite" "$REF" "$d/f" "$MNT_B"
    reference v3 2000000 13   # same size, new bytes in place (no truncation)
    dd if="$REF" of="$MNT_A/$d/f" bs=64K conv=notrunc status=none
    same_through "close-to-open, overwritten in place" "$REF" "$d/f" "$MNT_B"
    reference v4-tail 3000000 14   # longer: appended to what was there
    cat "$REF" >>"$MNT_A/$d/f"
    cat "$E2E_TMP/ref/v3" "$REF" >"$E2E_TMP/ref/v4"
    same_through "close-to-open, appended" "$E2E_TMP/ref/v4" "$d/f" "$MNT_B"
    # B keeps the file open (and read it) while A writes a new version beside and renames it
    # over: a new open on B reads the new file.
    exec {v}<"$MNT_B/$d/f"
    head -c 100000 <&"$v" >/dev/null
    reference v5 1234567 15
    cp "$REF" "$MNT_A/$d/f.new"
    mv "$MNT_A/$d/f.new" "$MNT_A/$d/f"
    same_through "close-to-open, replaced by rename while B held it open" "$REF" "$d/f" "$MNT_B"
    exec {v}<&-
    ok "close-to-open: 5 versions written on A, each read whole and current on B"
}

# check_listings: what one node creates, the other lists (both ways), with the same sizes.
check_listings() {
    local d=ls n a b
    mkdir -p "$MNT_A/$d/sub"
    for n in 1 2 3 4 5 6 7; do head -c $((n * 1000)) /dev/urandom >"$MNT_A/$d/a$n"; done
    for n in 1 2 3; do head -c $((n * 777)) /dev/urandom >"$MNT_B/$d/sub/b$n"; done
    a=$(listing "$MNT_A/$d") b=$(listing "$MNT_B/$d")
    assert_eq "$a" "$b" "listing of $d on A and on B"
    assert_eq "a1 a2 a3 a4 a5 a6 a7 sub sub/b1 sub/b2 sub/b3 " "$a" "listing of $d"
    a=$(cd "$MNT_A/$d" && stat -c '%n %s' a* sub/*) b=$(cd "$MNT_B/$d" && stat -c '%n %s' a* sub/*)
    assert_eq "$a" "$b" "names and sizes in $d on A and on B"
    ok "listings: 10 files and a directory made on A and B, listed alike on both"
}

# check_rename_unlink: a rename or an unlink on one node is seen by the other, both ways, at
# once: in a listing (readdir is never cached) and by name (the diofs mounts have
# entry_timeout=0, as on a cluster they should: docs/design.md, "On a cluster").
check_rename_unlink() {
    local d=mv
    mkdir "$MNT_A/$d"
    reference mv1 300000 21
    cp "$REF" "$MNT_A/$d/old"
    same_through "before the rename" "$REF" "$d/old" "$MNT_B"
    mv "$MNT_A/$d/old" "$MNT_A/$d/new"
    assert_eq "new " "$(listing "$MNT_B/$d")" "listing of $d on B after the rename on A"
    name_gone "$MNT_B" "$d/old" "A renamed it"
    same_through "renamed on A" "$REF" "$d/new" "$MNT_B"
    mv "$MNT_B/$d/new" "$MNT_B/$d/back"
    assert_eq "back " "$(listing "$MNT_A/$d")" "listing of $d on A after the rename on B"
    name_gone "$MNT_A" "$d/new" "B renamed it"
    same_through "renamed on B" "$REF" "$d/back" "$MNT_A"
    rm "$MNT_A/$d/back"
    assert_eq "" "$(listing "$MNT_B/$d")" "listing of $d on B after the unlink on A"
    name_gone "$MNT_B" "$d/back" "A removed it"
    echo x >"$MNT_B/$d/gone"
    cat "$MNT_A/$d/gone" >/dev/null
    rm "$MNT_B/$d/gone"
    assert_eq "" "$(listing "$MNT_A/$d")" "listing of $d on A after the unlink on B"
    name_gone "$MNT_A" "$d/gone" "B unlinked it"
    rmdir "$MNT_B/$d"
    assert_not_contains " $(listing "$MNT_A")" " $d " "listing on A after B removed $d"
    ok "rename and unlink: seen from the other node at once, both ways, in listings and by name"
}

# name_gone MOUNT NAME WHY: NAME is not found through MOUNT.
name_gone() {
    [[ ! -e "$1/$2" ]] || fail "$1/$2 is still found after $3"
}

# check_writer_reader MODE: crossnode.py writes 6 MB on A in 100,000-byte writes while a reader
# on B reads after each (MODE strict: it must read every byte whose write returned).
check_writer_reader() {
    local mode=$1 d="wr-$1" sync="$E2E_TMP/sync-$1" size=6000000 writer reader
    mkdir "$MNT_A/$d" "$sync"
    python3 "$CROSSNODE" writer "$MNT_A/$d/log" "$size" 100000 "$sync" >"$sync/writer.out" 2>&1 &
    writer=$!
    python3 "$CROSSNODE" reader "$MNT_B/$d/log" "$size" "$sync" "$mode" >"$sync/reader.out" 2>&1 &
    reader=$!
    local ws=0 rs=0
    wait "$writer" || ws=$?
    wait "$reader" || rs=$?
    [[ "$ws $rs" == "0 0" ]] || cat "$sync/reader.out" "$sync/writer.out" >&2
    assert_eq "0 0" "$ws $rs" "exit status of the writer on A and the reader on B ($mode)"
    python3 "$CROSSNODE" make "$E2E_TMP/ref/$d" "$size"
    same_through "writer and reader ($mode)" "$E2E_TMP/ref/$d" "$d/log" "$CLIENT_B" "$MNT_A"
    ok "writer on A, reader on B ($mode): $(tail -n 1 "$sync/reader.out")"
}

# check_tools: files made through A by dd bs=4K, cp, gzip and gunzip are byte for byte the
# same through B, through the plain client mounts of A and B.
check_tools() {
    local d=tools
    mkdir "$MNT_A/$d"
    reference redo 12000000 31
    dd if="$REF" of="$MNT_A/$d/dd.out" bs=4K status=none
    cp "$REF" "$MNT_A/$d/cp.out"
    gzip -n -k "$MNT_A/$d/cp.out"
    gzip -n -c "$REF" >"$E2E_TMP/ref/redo.gz"
    gzip -n -c "$REF" >"$MNT_A/$d/piped.gz"
    gunzip -c "$MNT_B/$d/cp.out.gz" >"$MNT_B/$d/gunzipped"
    same_through "dd bs=4K on A" "$REF" "$d/dd.out" "$MNT_B" "$CLIENT_A" "$CLIENT_B"
    same_through "cp on A" "$REF" "$d/cp.out" "$MNT_B" "$CLIENT_A" "$CLIENT_B"
    same_through "gzip -k on A" "$E2E_TMP/ref/redo.gz" "$d/cp.out.gz" "$MNT_B" "$CLIENT_A" "$CLIENT_B"
    same_through "gzip -c > on A" "$E2E_TMP/ref/redo.gz" "$d/piped.gz" "$MNT_B" "$CLIENT_B"
    same_through "gunzip on B" "$REF" "$d/gunzipped" "$MNT_A" "$CLIENT_A"
    ok "dd bs=4K, cp, gzip on A (and gunzip on B): identical through B and both client mounts"
}

# check_client_direct_io: O_DIRECT through the plain client mounts, as diofs uses it: written
# on A and read on B at 512 and 4096 bytes (the bricks' file system takes both here).
check_client_direct_io() {
    local bs
    reference dio 1048576 41
    for bs in 512 4096; do
        dd if="$REF" of="$CLIENT_A/dio-$bs" bs="$bs" oflag=direct status=none
        dd if="$CLIENT_B/dio-$bs" of="$E2E_TMP/dio-$bs.back" bs="$bs" iflag=direct status=none
        assert_same_files "$REF" "$E2E_TMP/dio-$bs.back" "O_DIRECT at $bs bytes, A to B"
        rm "$CLIENT_A/dio-$bs"
    done
    ok "O_DIRECT on the client mounts: 512- and 4096-byte writes on A read on B"
}

# locked_elsewhere KIND FILE: exit 0 when FILE (on another node) cannot be locked now, 1 when
# it can (and then it is unlocked again). KIND: flock, or posix (fcntl, as lockf takes it).
locked_elsewhere() {
    python3 - "$1" "$2" <<'EOF_PY'
import fcntl, sys
kind, path = sys.argv[1], sys.argv[2]
with open(path, "r+") as f:
    try:
        if kind == "flock":
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError:
        sys.exit(0)
sys.exit(1)
EOF_PY
}

# check_locks: a flock() and a POSIX lock taken on one node block the same lock on the other,
# both ways, and go when the holder unlocks or dies; a blocking lock on B waits for A's unlock.
check_locks() {
    local d=locks kind holder_node other_node holder fifo
    mkdir "$MNT_A/$d"
    echo data >"$MNT_A/$d/f"
    for kind in flock posix; do
        for holder_node in A B; do
            other_node=B
            [[ $holder_node == B ]] && other_node=A
            local on_holder="$E2E_TMP/mnt-$holder_node/$d/f" on_other="$E2E_TMP/mnt-$other_node/$d/f"
            fifo="$E2E_TMP/lock-$kind-$holder_node"
            mkfifo "$fifo"
            # The holder locks, says so, and keeps the lock until it is killed.
            python3 - "$kind" "$on_holder" "$fifo" <<'EOF_PY' &
import fcntl, sys, time
kind, path, fifo = sys.argv[1], sys.argv[2], sys.argv[3]
f = open(path, "r+")
if kind == "flock":
    fcntl.flock(f, fcntl.LOCK_EX)
else:
    fcntl.lockf(f, fcntl.LOCK_EX, 1, 0)
open(fifo, "w").write("locked\n")
time.sleep(600)
EOF_PY
            holder=$!
            track_pid "$holder"
            assert_eq "locked" "$(timeout 20 cat "$fifo")" "$kind lock taken on $holder_node"
            locked_elsewhere "$kind" "$on_other" ||
                fail "$kind lock held on $holder_node, yet taken on $other_node"
            kill -KILL "$holder"
            wait "$holder" 2>/dev/null || true
            # POSIX locks go with the holder's close; a flock with the release just after.
            local free=""
            for _ in $(seq 100); do
                if ! locked_elsewhere "$kind" "$on_other"; then free=yes; break; fi
                sleep 0.05
            done
            [[ -n $free ]] || fail "$kind lock of the killed holder on $holder_node still held 5 s later"
            rm -f "$fifo"
        done
    done
    # A blocking flock on B waits for A's unlock, and gets the lock then.
    exec {fd}<>"$MNT_A/$d/f"
    flock -x "$fd"
    timeout 20 flock -x "$MNT_B/$d/f" -c 'echo got' >"$E2E_TMP/waiter.out" &
    local waiter=$!
    sleep 0.5
    assert_eq "" "$(cat "$E2E_TMP/waiter.out")" "B's blocking flock while A holds the lock"
    flock -u "$fd"
    exec {fd}>&-
    wait "$waiter" || fail "B's blocking flock did not get the lock after A's unlock"
    assert_eq "got" "$(cat "$E2E_TMP/waiter.out")" "B's blocking flock after A's unlock"
    ok "locks: flock and POSIX locks held on one node block the other, both ways; freed when the holder dies; a waiting flock on B gets A's lock at its unlock"
}

# check_logs_clean NODE...: no diofs log of these nodes has a warning or an error, and the
# alignment each chose is in the log (printed for the record).
check_logs_clean() {
    local node log
    for node in "$@"; do
        log=LOG_$node
        assert_contains "$(cat "${!log}")" "direct-I/O alignment of" "diofs log of node $node"
        note "node $node: $(grep -o 'direct-I/O alignment of .*' "${!log}" | tail -n 1)"
        assert_not_contains "$(cat "${!log}")" " warning: " "diofs log of node $node"
        assert_not_contains "$(cat "${!log}")" " error: " "diofs log of node $node"
    done
}

# ---------------------------------------------------------------------------------------------

gluster_start
check_client_direct_io

node_mount A dbopt,entry_timeout=0
node_mount B dbopt,entry_timeout=0
check_close_to_open
check_listings
check_rename_unlink
check_locks
check_writer_reader coalescing
check_tools
check_logs_clean A B
node_unmount A
node_unmount B

node_mount A dbopt,strict,entry_timeout=0
node_mount B dbopt,strict,entry_timeout=0
check_writer_reader strict
check_logs_clean A B
node_unmount A
node_unmount B
ok "all cross-node checks passed"

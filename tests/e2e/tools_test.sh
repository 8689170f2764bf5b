#!/bin/bash
# Everyday tools through a diofs mount: cp -a of a real tree in and out, gzip/gunzip of a
# redo-log-like file, tar c/x, running a program from the mount, and a 1-byte-at-a-time
# writer and reader. Every result is compared with the same bytes outside the mount and with
# the backing directory.
#
# usage: tools_test.sh [MOUNT_OPTIONS]   (default: dbopt; "plain" for no -o at all)

E2E_TIMEOUT=${E2E_TIMEOUT:-120}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

options=${1:-dbopt}
[[ $options == plain ]] && options=""
tree=/usr/share/doc
[[ -d $tree ]] || skip "$tree does not exist"

src=$E2E_TMP/backing
mnt=$E2E_TMP/mnt
out=$E2E_TMP/out
ref=$E2E_TMP/ref
mkdir "$src" "$mnt" "$out" "$ref"
diofs_mount "$src" "$mnt" "$options"
note "mounted $src on $mnt with -o '${options}'"

# A listing of a tree that must survive copies: path, mode, owner, group, type, link target.
# Times are left out (atime and ctime change); regular files' mtimes are compared apart.
listing() { (cd "$1" && find . -printf '%p %m %u %g %y %l\n' | LC_ALL=C sort); }
mtimes() { (cd "$1" && find . -type f -printf '%p %T@\n' | LC_ALL=C sort); }

# same_tree EXPECTED GOT WHAT: same contents (symlinks compared as links, not followed), same
# listing, same regular-file mtimes.
same_tree() {
    local expected=$1 got=$2 what=$3
    local d
    # diff calls two FIFOs a difference; the listing compares them.
    d=$(diff -r --no-dereference -- "$expected" "$got" 2>&1 |
        grep -Ev '^File .* is a fifo while file .* is a fifo$' || true)
    if [[ -n "$d" ]]; then
        printf '%s: FAIL: %s: diff -r %s %s:\n' "$E2E_NAME" "$what" "$expected" "$got" >&2
        printf '%s\n' "$d" | head -n 30 >&2
        exit 1
    fi
    listing "$expected" >"$E2E_TMP/listing.expected"
    listing "$got" >"$E2E_TMP/listing.got"
    assert_same_files "$E2E_TMP/listing.expected" "$E2E_TMP/listing.got" \
        "$what: modes, owners, groups, types and symlink targets"
    mtimes "$expected" >"$E2E_TMP/mtimes.expected"
    mtimes "$got" >"$E2E_TMP/mtimes.got"
    assert_same_files "$E2E_TMP/mtimes.expected" "$E2E_TMP/mtimes.got" "$what: file mtimes"
    ok "$what"
}

# --- cp -a in and out ------------------------------------------------------------------------
cp -a "$tree" "$mnt/doc"
same_tree "$tree" "$mnt/doc" "cp -a $tree into the mount (seen through the mount)"
same_tree "$tree" "$src/doc" "cp -a $tree into the mount (seen in the backing directory)"
cp -a "$mnt/doc" "$out/doc"
same_tree "$tree" "$out/doc" "cp -a back out of the mount"
same_tree "$mnt/doc" "$out/doc" "the copy out equals the mount's tree"

# --- cp -a and tar of a tree with the unusual cases ------------------------------------------
# Hard links, a FIFO, setuid/setgid files of another owner, a sticky directory, a sparse file,
# user.* extended attributes, dangling and directory symlinks, odd and 255-byte names, depth.
special=$ref/special
mkdir -p "$special/deep/$(printf 'd%.0s/' $(seq 1 24))"
echo "deepest" >"$special/deep/$(printf 'd%.0s/' $(seq 1 24))file"
echo "linked" >"$special/hardlink-a"
ln "$special/hardlink-a" "$special/hardlink-b"
mkfifo "$special/fifo"
cp /usr/bin/env "$special/setid-prog"
chown 65534:65534 "$special/setid-prog"
chmod 6755 "$special/setid-prog"
mkdir -m 1777 "$special/sticky"
chmod 1777 "$special/sticky"
: >"$special/empty"
printf 'x' >"$special/name with spaces and ünïcödé"
echo long >"$special/$(printf 'n%.0s' $(seq 1 255))"
truncate -s 10M "$special/sparse"
echo "tail of a sparse file" >>"$special/sparse"
echo "head" | dd of="$special/sparse" conv=notrunc status=none
ln -s does-not-exist "$special/dangling"
ln -s deep "$special/dir-link"
chmod 0400 "$special/empty"
setfattr -n user.diofs -v "an attribute" "$special/hardlink-a"
setfattr -n user.empty "$special/sticky"
touch -d "2001-02-03 04:05:06.789" "$special/name with spaces and ünïcödé"
# "path name value" for every user.* extended attribute under a directory (links not followed).
xattrs() {
    python3 - "$1" <<'EOF_PY' | LC_ALL=C sort
import os, sys
top = sys.argv[1]
for root, dirs, files in os.walk(top):
    for path in [root] + [os.path.join(root, n) for n in dirs + files]:
        for name in os.listxattr(path, follow_symlinks=False):
            if name.startswith("user."):
                value = os.getxattr(path, name, follow_symlinks=False)
                print(os.path.relpath(path, top), name, value)
EOF_PY
}
inode_pairs() { [[ $(stat -c %i "$1/hardlink-a") == $(stat -c %i "$1/hardlink-b") ]] &&
    [[ $(stat -c %h "$1/hardlink-a") == 2 ]]; }

assert_contains "$(xattrs "$special")" "hardlink-a user.diofs b'an attribute'" "the xattrs of the reference tree"
cp -a "$special" "$mnt/special"
same_tree "$special" "$mnt/special" "cp -a of the unusual tree into the mount"
same_tree "$special" "$src/special" "cp -a of the unusual tree (backing directory)"
assert_eq "$(xattrs "$special")" "$(xattrs "$mnt/special")" "user.* xattrs copied into the mount"
assert_eq "$(xattrs "$special")" "$(xattrs "$src/special")" "user.* xattrs in the backing directory"
inode_pairs "$mnt/special" || fail "cp -a into the mount did not keep hardlink-a and hardlink-b one file"
inode_pairs "$src/special" || fail "hardlink-a and hardlink-b are not one file in the backing directory"
assert_eq fifo "$(stat -c %F "$mnt/special/fifo")" "type of the FIFO seen through the mount"
cp -a "$mnt/special" "$out/special"
same_tree "$special" "$out/special" "cp -a of the unusual tree back out"
assert_eq "$(xattrs "$special")" "$(xattrs "$out/special")" "user.* xattrs copied out of the mount"
inode_pairs "$out/special" || fail "cp -a out of the mount did not keep the hard link"
mkdir "$mnt/untar-special"
tar --xattrs --xattrs-include='user.*' -C "$mnt" -cf - special |
    tar --xattrs --xattrs-include='user.*' -C "$mnt/untar-special" -xpf -
same_tree "$special" "$mnt/untar-special/special" "tar c | tar x of the unusual tree, in the mount"
assert_eq "$(xattrs "$special")" "$(xattrs "$mnt/untar-special/special")" "user.* xattrs after tar c | tar x"
inode_pairs "$mnt/untar-special/special" || fail "tar x into the mount did not keep the hard link"
ok "hard links, FIFO, setuid/setgid, sticky, sparse, xattrs, odd names survive cp -a and tar"

# --- gzip / gunzip of a ~20 MiB redo-log-like file -------------------------------------------
size=$((20 * 1024 * 1024 + 12345))  # an odd tail, as real output files have
[[ -f "$mkredo" ]] || note "$mkredo is missing: generating the redo file inline"
make_redo "$ref/redo.log" "$size" 7
make_redo "$mnt/redo.log" "$size" 7
assert_eq "$size" "$(stat -c %s "$mnt/redo.log")" "size of redo.log written in the mount"
assert_same_files "$ref/redo.log" "$mnt/redo.log" "redo.log written through the mount"
assert_same_files "$ref/redo.log" "$src/redo.log" "redo.log in the backing directory"
gzip -n -9 "$mnt/redo.log"
[[ ! -e "$mnt/redo.log" ]] || fail "gzip left $mnt/redo.log behind"
gzip -n -9 -c "$ref/redo.log" >"$ref/redo.log.gz"
assert_same_files "$ref/redo.log.gz" "$mnt/redo.log.gz" "gzip -9 output written in the mount"
gzip -t "$mnt/redo.log.gz"
gunzip "$mnt/redo.log.gz"
assert_same_files "$ref/redo.log" "$mnt/redo.log" "gzip then gunzip inside the mount"
assert_same_files "$ref/redo.log" "$src/redo.log" "gzip then gunzip (backing directory)"
ok "gzip and gunzip of a $size-byte file inside the mount give identical bytes"

# Copies inside the mount (cp uses copy_file_range), zstd, a shell redirection.
cp "$mnt/redo.log" "$mnt/redo.copy"
assert_same_files "$ref/redo.log" "$mnt/redo.copy" "cp of redo.log inside the mount"
assert_same_files "$ref/redo.log" "$src/redo.copy" "cp of redo.log inside the mount (backing directory)"
cat "$mnt/redo.copy" >"$mnt/redo.cat"
assert_same_files "$ref/redo.log" "$mnt/redo.cat" "cat redo.copy > redo.cat inside the mount"
if command -v zstd >/dev/null; then
    zstd -q -T1 -c "$mnt/redo.cat" >"$mnt/redo.cat.zst"
    zstd -q -d -c "$mnt/redo.cat.zst" >"$mnt/redo.unzstd"
    assert_same_files "$ref/redo.log" "$mnt/redo.unzstd" "zstd then zstd -d inside the mount"
fi
ok "cp, cat and zstd inside the mount give identical bytes"
rm -f "$mnt"/redo.copy "$mnt"/redo.cat "$mnt"/redo.cat.zst "$mnt"/redo.unzstd

# --- tar c from the mount, tar x into the mount ----------------------------------------------
tar -C "$mnt" -cf "$mnt/doc.tar" doc
tar -C "$tree/.." -cf "$ref/doc.tar" doc
tar -tvf "$ref/doc.tar" | LC_ALL=C sort >"$E2E_TMP/tar.expected"
tar -tvf "$mnt/doc.tar" | LC_ALL=C sort >"$E2E_TMP/tar.got"
assert_same_files "$E2E_TMP/tar.expected" "$E2E_TMP/tar.got" "tar -tv of the archive made in the mount"
mkdir "$mnt/untar"
tar -C "$mnt/untar" -xpf "$mnt/doc.tar"
same_tree "$tree" "$mnt/untar/doc" "tar c of the mount's tree, tar x into the mount"
same_tree "$tree" "$src/untar/doc" "tar x into the mount (backing directory)"

# --- a program runs from the mount -----------------------------------------------------------
cp /usr/bin/env "$mnt/env"
cp /bin/ls "$mnt/ls"
assert_eq "hello from diofs" "$("$mnt/env" echo hello from diofs)" "output of env run from the mount"
assert_eq "$(/bin/ls -la "$tree")" "$("$mnt/ls" -la "$tree")" "output of ls run from the mount"
assert_eq "$(/bin/ls -1 "$src")" "$("$mnt/ls" -1 "$mnt")" "ls run from the mount lists the mount"
ok "programs copied into the mount execute from it"

# --- a writer and a reader that move 1 byte at a time ----------------------------------------
head -c 9999 "$ref/redo.log" >"$ref/bytewise"
dd if="$ref/bytewise" of="$mnt/bytewise" bs=1 status=none
assert_same_files "$ref/bytewise" "$mnt/bytewise" "file written 1 byte at a time (dd bs=1)"
assert_same_files "$ref/bytewise" "$src/bytewise" "file written 1 byte at a time (backing directory)"
dd if="$mnt/bytewise" of="$out/bytewise" bs=1 status=none
assert_same_files "$ref/bytewise" "$out/bytewise" "file read 1 byte at a time (dd bs=1)"
# Overwrite bytes in the middle, one at a time, across 512- and 4096-byte boundaries.
for f in "$ref/bytewise" "$mnt/bytewise"; do
    printf 'OVERWRITTEN-%04d|' $(seq 1 60) |
        dd of="$f" bs=1 seek=4000 conv=notrunc status=none
done
assert_same_files "$ref/bytewise" "$mnt/bytewise" "1-byte overwrites in the middle of a file"
assert_same_files "$ref/bytewise" "$src/bytewise" "1-byte overwrites (backing directory)"
# Appends, 1 byte at a time.
for f in "$ref/bytewise" "$mnt/bytewise"; do
    head -c 777 "$ref/redo.log" | dd of="$f" bs=1 oflag=append conv=notrunc status=none
done
assert_same_files "$ref/bytewise" "$mnt/bytewise" "1-byte appends (O_APPEND)"
ok "1-byte writers and readers"

# rm -rf of a big tree through the mount.
rm -rf "$mnt/untar"
[[ ! -e "$src/untar" ]] || fail "rm -rf through the mount left $src/untar behind"
[[ ! -e "$mnt/untar" ]] || fail "$mnt/untar is still seen through the mount after rm -rf"
ok "rm -rf of a tree through the mount"

diofs_unmount "$mnt" "$DIOFS_PID"
same_tree "$tree" "$src/doc" "backing tree after umount"
ok "umount ends the daemon with status 0"

#!/bin/bash
# The promise of -o dbopt, with everyday tools: cp, gzip, gunzip, tar, dd (direct, 1 byte at a
# time, partial overwrites in the middle of a file), and `cat >>` appends give the same bytes
# as on a plain directory, and after every step no page of any backing file of the mount is in
# the page cache (fincore). A control run of the same steps on a mount without dbopt must find
# pages in the page cache after every step, so that the check is known to be able to fail.
#
# usage: dbopt_tools_test.sh [BACKING]
#   plain-dir    (default) a directory of the file system under /tmp
#   loop4k-xfs   xfs on a loop device with 4096-byte logical sectors
#   loop4k-ext4  ext4 on a loop device with 4096-byte logical sectors

E2E_TIMEOUT=${E2E_TIMEOUT:-150}
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

backing=${1:-plain-dir}
command -v fincore >/dev/null || skip "fincore (util-linux) is not installed"
[[ -w /proc/sys/vm/drop_caches ]] || skip "cannot write /proc/sys/vm/drop_caches"

base=$E2E_TMP/base
expected_align=""
case $backing in
    plain-dir) mkdir "$base" ;;
    loop4k-xfs) e2e_loop_fs xfs "$base" 1024 4096; expected_align=4096 ;;
    loop4k-ext4) e2e_loop_fs ext4 "$base" 1024 4096; expected_align=4096 ;;
    *) fail "unknown backing '$backing' (plain-dir, loop4k-xfs, loop4k-ext4)" ;;
esac
note "backing: $backing ($(findmnt -n -o FSTYPE,SOURCE --target "$base" | tr -s ' '))"

in=$E2E_TMP/in    # the inputs, outside the mount
ref=$E2E_TMP/ref  # the reference: the same steps on a plain directory
mkdir "$in"

# --- inputs ----------------------------------------------------------------------------------
[[ -f "$mkredo" ]] || note "$mkredo is missing: generating the redo files inline"
redo_size=$((32 * 1024 * 1024 + 12345))  # an odd tail, as real output files have
make_redo "$in/redo.log" "$redo_size" 2
mkdir "$in/tree" "$in/tree/sub"
make_redo "$in/tree/a.log" $((1024 * 1024 + 7)) 3
make_redo "$in/tree/b.log" $((3 * 1024 * 1024 + 511)) 4
make_redo "$in/tree/sub/c.log" 100000 5
make_redo "$in/tree/sub/d.log" 4096 6
: >"$in/tree/sub/empty"
head -c 9999 "$in/tree/b.log" >"$in/small"
make_redo "$in/patch" $((3 * 4096 + 100)) 8
# Reproducible archives: no times, owners or order that differ between two directories.
tar_det=(--format=gnu --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner)

# --- the steps -------------------------------------------------------------------------------
# Each step_NAME DIR does one thing in DIR (the reference directory or a mount) and sets
# OUTPUTS to the files it made or changed there (relative to DIR), which are then compared.
# The big file is 32 MiB + 12345 bytes; offsets are chosen to cross 512- and 4096-byte
# sector boundaries.
mid=$((5 * 1024 * 1024 + 333))

step_cp() {  # cp from outside into DIR, then cp inside DIR (copy_file_range)
    cp "$in/redo.log" "$1/redo.log"
    cp "$1/redo.log" "$1/redo.copy"
    OUTPUTS=(redo.log redo.copy)
}
step_gzip() {  # gzip -k (default level) and gzip -9 (replaces the file)
    gzip -n -k "$1/redo.log"
    gzip -n -9 "$1/redo.copy"
    [[ ! -e "$1/redo.copy" ]] || fail "gzip -9 left $1/redo.copy behind"
    OUTPUTS=(redo.log redo.log.gz redo.copy.gz)
}
step_gunzip() {  # gunzip (replaces the .gz) and gunzip -c > FILE
    gunzip "$1/redo.copy.gz"
    gunzip -c "$1/redo.log.gz" >"$1/redo.back"
    OUTPUTS=(redo.copy redo.back)
}
step_tar() {  # tar c into DIR, tar x back into DIR, tar c of the extracted tree from DIR
    tar -C "$in" "${tar_det[@]}" -cf "$1/tree.tar" tree
    mkdir "$1/untar"
    tar -C "$1/untar" -xf "$1/tree.tar"
    tar -C "$1/untar" "${tar_det[@]}" -cf "$1/tree-again.tar" tree
    OUTPUTS=(tree.tar tree-again.tar untar/tree/a.log untar/tree/b.log untar/tree/sub/c.log
        untar/tree/sub/d.log untar/tree/sub/empty)
}
step_dd_direct() {  # dd oflag=direct writes and iflag=direct reads, 1 MiB and 4 KiB blocks
    dd if="$in/redo.log" of="$1/dd.direct" bs=1M oflag=direct status=none
    dd if="$1/dd.direct" of="$1/dd.read" bs=1M iflag=direct status=none
    dd if="$1/redo.log" of="$1/dd.slice" bs=4096 skip=100 count=50 iflag=direct status=none
    dd if="$in/patch" of="$1/dd.direct" bs=4096 seek=77 count=2 oflag=direct conv=notrunc status=none
    OUTPUTS=(dd.direct dd.read dd.slice)
}
step_dd_bs1() {  # 1-byte writes: a new file, and an overwrite in the middle of the big file
    dd if="$in/small" of="$1/bytewise" bs=1 status=none
    dd if="$in/patch" of="$1/redo.log" bs=1 seek="$mid" count=5000 conv=notrunc status=none
    OUTPUTS=(bytewise redo.log)
}
step_dd_seek() {  # 4 KiB-block overwrites in the middle: aligned, unaligned, and past the end
    dd if="$in/patch" of="$1/redo.log" bs=4096 seek=1000 conv=notrunc status=none
    dd if="$in/patch" of="$1/redo.log" bs=4096 seek=12345 oflag=seek_bytes conv=notrunc status=none
    dd if="$in/patch" of="$1/redo.copy" bs=4096 seek=$((redo_size / 4096)) conv=notrunc status=none
    dd if="$in/patch" of="$1/redo.back" bs=4096 seek=$((redo_size / 4096 + 10)) conv=notrunc status=none
    OUTPUTS=(redo.log redo.copy redo.back)
}
step_truncate() {  # truncate down and up to odd sizes; dd without conv=notrunc truncates at seek=
    truncate -s $((redo_size - 70000)) "$1/redo.copy"
    truncate -s $((redo_size + 100001)) "$1/redo.copy"
    dd if="$in/patch" of="$1/dd.slice" bs=1 seek=12345 count=10 status=none
    OUTPUTS=(redo.copy dd.slice)
}
# shellcheck disable=SC2129  # separate appends, each its own open(O_APPEND), on purpose
step_append() {  # cat >> at unaligned ends
    cat "$in/small" >>"$1/bytewise"
    cat "$in/tree/a.log" >>"$1/bytewise"
    echo "the last line" >>"$1/bytewise"
    cat "$in/redo.log" >>"$1/redo.back"
    OUTPUTS=(bytewise redo.back)
}
steps=(cp gzip gunzip tar dd_direct dd_bs1 dd_seek truncate append)

# --- page cache checks -----------------------------------------------------------------------
drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }

# drops_now: how many times the page cache was dropped (echo 1 or 3 >drop_caches) since boot,
# by anybody. Another process that drops the page cache while a step runs can hide the pages
# that step left (a false pass of the dbopt check, a false failure of the control): such a step
# is inconclusive, and the run is repeated (see below). Empty when the kernel does not count.
drops_now() { awk '$1 == "drop_pagecache" { print $2 }' /proc/vmstat; }

# resident_pages DIR: "PAGES FILE" for every regular file under DIR that has pages in the page
# cache; nothing when none does.
resident_pages() {
    find "$1" -type f -print0 | xargs -0 -r fincore --noheadings --raw --output PAGES,FILE |
        awk '$1 > 0'
}
# resident_total DIR: the number of resident pages of all regular files under DIR.
resident_total() {
    find "$1" -type f -print0 | xargs -0 -r fincore --noheadings --raw --output PAGES |
        awk '{ n += $1 } END { print n + 0 }'
}

# What the runs showed, per step: CONCLUSIVE[MODE:STEP]=1 once the page-cache check of STEP
# gave a result that no foreign drop of the page cache can explain.
declare -A CONCLUSIVE
cache_failures=()

# run_steps MODE: MODE is dbopt (after every step: same bytes as the reference, no resident
# page) or control (a mount without dbopt: resident pages after every step).
run_steps() {
    local mode=$1 options="" step f resident d0 d1
    local src=$base/$mode-src mnt=$E2E_TMP/mnt-$mode
    [[ $mode == dbopt ]] && options=dbopt
    rm -rf "$src" "$ref"
    mkdir -p "$src" "$mnt" "$ref"
    diofs_mount "$src" "$mnt" "$options"
    if [[ $mode == dbopt ]]; then
        local line
        line=$(grep -F "direct-I/O alignment of $src:" "$DIOFS_LOG" | tail -n 1 || true)
        [[ -n "$line" ]] || fail "the log of the dbopt mount does not name the direct-I/O alignment of $src"
        if [[ -n "$expected_align" ]]; then
            assert_contains "$line" "direct-I/O alignment of $src: $expected_align bytes" \
                "the alignment logged for a $backing backing"
        fi
        note "log: ${line#*info: }"
    fi
    drop_caches  # the inputs start cold
    for step in "${steps[@]}"; do
        [[ $mode == control ]] && drop_caches
        d0=$(drops_now)
        "step_$step" "$ref"
        "step_$step" "$mnt"
        if [[ $mode == control ]]; then
            # Checked at once: the next drop of the page cache takes what the step left (which
            # is also why these tests hold a ctest RESOURCE_LOCK).
            resident=$(resident_total "$src")
            d1=$(drops_now)
            if ((resident > 0)); then
                CONCLUSIVE[$mode:$step]=1
            elif [[ "$d0" != "$d1" ]]; then
                note "control, step $step: 0 resident pages, but another process dropped the page cache meanwhile: inconclusive"
            else
                fail "control (no dbopt), step $step: no page of a backing file is in the page cache, so the dbopt check could not fail"
            fi
        fi
        for f in "${OUTPUTS[@]}"; do
            assert_same_files "$ref/$f" "$mnt/$f" "$mode, step $step: $f (reference vs mount)"
            assert_eq "$(stat -c %s "$ref/$f")" "$(stat -c %s "$mnt/$f")" "$mode, step $step: size of $f"
        done
        if [[ $mode == dbopt ]]; then
            # After the step and after reading its outputs back through the mount (cmp).
            # A failure here is reported, and the remaining steps still run (on the pages
            # this step left behind) so that one run shows every step that leaves pages.
            resident=$(resident_pages "$src")
            d1=$(drops_now)
            if [[ -n "$resident" ]]; then
                printf '%s: FAIL: dbopt (%s), step %s: backing files have pages in the page cache (PAGES FILE):\n%s\n' \
                    "$E2E_NAME" "$backing" "$step" "$resident" >&2
                [[ " ${cache_failures[*]} " == *" $step "* ]] || cache_failures+=("$step")
                CONCLUSIVE[$mode:$step]=1
                drop_caches  # so that the next step is judged on its own
            elif [[ "$d0" != "$d1" ]]; then
                note "dbopt, step $step: 0 resident pages, but another process dropped the page cache meanwhile: inconclusive"
            else
                CONCLUSIVE[$mode:$step]=1
                ok "dbopt, step $step: ${OUTPUTS[*]} identical to the reference, 0 resident pages in $src"
            fi
        else
            ok "control, step $step: ${OUTPUTS[*]} identical to the reference, $resident resident pages in $src"
        fi
    done
    # The whole tree, through the mount and (after umount) in the backing directory.
    diff -r "$ref" "$mnt" >"$E2E_TMP/diff" 2>&1 || { cat "$E2E_TMP/diff" >&2; fail "$mode: the mount's tree differs from the reference"; }
    if [[ $mode == dbopt ]]; then
        resident=$(resident_pages "$src")
        [[ -z "$resident" ]] || fail "dbopt: after diff -r through the mount, resident pages: $resident"
    fi
    diofs_unmount "$mnt" "$DIOFS_PID"
    diff -r "$ref" "$src" >"$E2E_TMP/diff" 2>&1 || { cat "$E2E_TMP/diff" >&2; fail "$mode: the backing tree differs from the reference"; }
    ok "$mode ($backing): the whole tree equals the reference, through the mount and in the backing directory"
    rm -rf "$src"
}

# inconclusive MODE: the steps of MODE without a conclusive page-cache check yet.
inconclusive() {
    local step
    for step in "${steps[@]}"; do
        [[ -v "CONCLUSIVE[$1:$step]" ]] || printf '%s ' "$step"
    done
}

# Each mode runs again (up to 3 times in all) while some step's check was made inconclusive
# by another process dropping the page cache.
for mode in dbopt control; do
    for attempt in 1 2 3; do
        ((attempt == 1)) || note "$mode: running the steps again (attempt $attempt): inconclusive: $(inconclusive "$mode")"
        run_steps "$mode"
        [[ -z "$(inconclusive "$mode")" ]] && break
    done
done
((${#cache_failures[@]} == 0)) ||
    fail "dbopt ($backing): steps that left pages of backing files in the page cache: ${cache_failures[*]}"
for mode in dbopt control; do
    left=$(inconclusive "$mode")
    [[ -z "$left" ]] || skip "$mode: other processes dropped the page cache during steps $left in all 3 attempts: their page-cache check is unverified"
done
ok "dbopt ($backing): every step left 0 pages of backing files in the page cache; without dbopt every step left some"

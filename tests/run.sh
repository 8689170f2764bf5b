#!/usr/bin/env bash
# The tests, from a fresh machine, in two tiers (tests/README.md says what each runs and why):
#
#   tests/run.sh [CTEST ARGS...]          the quick tier: does diofs work on this machine?
#   tests/run.sh --full [CTEST ARGS...]   everything: what CI runs (.ci/run)
#
# Both install the Debian packages that are missing, build with warnings as errors, install
# diofs (the mount(8) and fstab tests use the installed helper, as a person would) and run the
# tests with ctest. The quick tier runs the main tree's tests less the ones named in
# full_only_tests below (longer variants of what it runs). --full runs every test of the main
# tree, then the same code under sanitizers and against the second libfuse, each built in a
# directory of its own beside the first (made while the first tests run): AddressSanitizer with
# UndefinedBehaviorSanitizer (build-asan/), ThreadSanitizer (build-tsan/) and the system's
# libfuse (build-fuse314/ on Debian 12). Every tree but the last is built against the default
# libfuse (mount_helpers/install-deps.sh, diofs_libfuse_prefix): the system's when it is 3.16 or
# newer, else 3.18.3 built from Debian's source package (mount_helpers/build-libfuse.sh, into
# DIOFS_LIBFUSE_PREFIX, default /opt/diofs-libfuse-3.18.3, kept for the next run); the second
# libfuse tree is there only when the default is not the system's. DIOFS_SANITIZERS=0 and
# DIOFS_SECOND_LIBFUSE=0 leave those out of --full, except under CI=true.
#
# Extra arguments go to every ctest run: `tests/run.sh -R DbOptDifferential` runs those tests
# only. Needs root for the real mounts; with CI=true a mount test that cannot run fails instead
# of skipping. Every test's temporary directories are made in one directory of this run's
# ($TMPDIR); after each ctest run anything left there (a mount, a loop device, a process, a
# file) is reported, fails the run and is removed. Ctrl-C or SIGTERM ends the tests through
# their own teardown (SIGTERM to each), then removes what is left the same way. Each part says
# how long it took; the exit status is not 0 when any part failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../mount_helpers/install-deps.sh
. "$repo/mount_helpers/install-deps.sh"
build=${DIOFS_BUILD_DIR:-$repo/build}

full=false
if [ "${1:-}" = --full ]; then
    full=true
    shift
elif [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    exit 0
fi

# What the quick tier leaves to --full (ctest -E): longer variants of what it runs, each with
# what the quick tier keeps of its kind.
full_only_tests=(
    # DbOptDifferential: strict and coalescing on a plain directory (512-byte sectors) and on xfs
    # over a 4096-byte-sector loop device stay, with fewer operations (quick_environment).
    'mount\.DbOptDifferential\.(Strict|Coalescing)Ext4On4KSectorLoopDevice'
    'mount\.DbOptDifferential\.(Strict|Coalescing)PlainDirectoryWithDioAlign4096'
    'mount\.DbOptDifferential\.(CoalescingWithSmallWindowsAndLittleMemory|RamfsFallback)'
    # e2e.tools (dbopt) stays; the plain passthrough is also what every MountOps test mounts.
    'e2e\.tools_plain'
    # dbopt_tools on a plain directory and on xfs with 4096-byte sectors stay.
    'e2e\.dbopt_tools_ext4_4k'
    # ENOSPC on ext4, strict and coalescing, stays.
    'e2e\.dbopt_enospc_(xfs|xfs_coalescing|ext2_coalescing)'
    # The Debian package: how diofs is shipped, not whether it works here.
    'e2e\.debian_package'
)
# The quick tier's smaller counts: DbOptDifferential runs of 5000 operations (20000), 10 rounds
# of umount MNT && umount BACKING (50).
quick_environment=(DIOFS_DBOPT_OPS=5000 DIOFS_UMOUNT_ROUNDS=10)
full_only_regex=$(IFS='|'; echo "^(${full_only_tests[*]})\$")

failed=""
times=""
status=0

# timed NAME COMMAND...: runs COMMAND, notes how long it took and whether it failed; its exit
# status is left in $status.
timed() {
    local name=$1 start=$SECONDS
    shift
    status=0
    "$@" || status=$?
    times="$times${times:+, }$name $((SECONDS - start)) s"
    if [ "$status" != 0 ]; then
        failed="$failed${failed:+, }$name"
        echo "tests/run.sh: $name failed (status $status)"
    fi
}

# summary: the times, what failed; ends the script.
summary() {
    echo "tests/run.sh: $times"
    echo "tests/run.sh: $tier took $((SECONDS / 60)) min $((SECONDS % 60)) s"
    if [ -n "$failed" ]; then
        [ -z "$failed_tests" ] || printf 'tests/run.sh: the tests that failed:%s\n\n' "$failed_tests"
        echo "tests/run.sh: FAILED: $failed"
        exit 1
    fi
    exit 0
}

# ---------------------------------------------------------------------------------------------
# What the tests leave behind. Every test makes its temporary directories under $run_tmp (the
# mount fixtures and tests/e2e/lib.sh take TMPDIR), so anything of theirs is found there, and
# nothing that is not theirs is ever touched.
run_tmp=""
make_run_tmp() {
    run_tmp=$(mktemp -d /tmp/diofs-tests.XXXXXX)
    chmod 0755 "$run_tmp"  # the permission tests' other users reach the mounts inside
}

# leftovers: one line per thing left under $run_tmp (mounts deepest first, loop devices,
# processes that name it), nothing when there is none.
leftovers() {
    # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
    awk -v dir="$run_tmp/" 'index($5, dir) == 1 {
            for (i = 7; $i != "-"; i++) {}
            print length($5), "mount", $5, $(i + 1), $3 }' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2-
    local f backing
    for f in /sys/block/loop*/loop/backing_file; do
        [ -r "$f" ] || continue
        backing=$(cat "$f" 2>/dev/null) || continue
        f=${f#/sys/block/}
        case "$backing" in "$run_tmp"/*) echo "loop /dev/${f%%/*} $backing" ;; esac
    done
    for f in $(pgrep -f -- "$run_tmp/"); do
        [ "$f" = "$$" ] ||
            echo "process $f $(tr '\0' ' ' <"/proc/$f/cmdline" 2>/dev/null | cut -c1-200)"
    done
    return 0
}

# remove_leftovers: ends, unmounts and detaches what leftovers lists, then empties $run_tmp. A
# FUSE mount's connection is aborted first (fusectl), so that nothing waits on a daemon that
# is gone or stuck; never stat-ed.
remove_leftovers() {
    local kind what type dev rest pid
    for pid in $(pgrep -f -- "$run_tmp/" || true); do
        [ "$pid" = "$$" ] || kill -KILL "$pid" 2>/dev/null || true
    done
    leftovers | while read -r kind what type dev rest; do
        case "$kind" in
        mount)
            if [ "${type#fuse}" != "$type" ] && [ "${dev%%:*}" = 0 ]; then
                [ -d /sys/fs/fuse/connections ] && ! mountpoint -q /sys/fs/fuse/connections &&
                    mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null
                echo 1 >"/sys/fs/fuse/connections/${dev#0:}/abort" 2>/dev/null || true
            fi
            umount "$what" 2>/dev/null || umount -l "$what" 2>/dev/null || true ;;
        loop) losetup -d "$what" 2>/dev/null || true ;;
        esac
    done
    rm -rf --one-file-system -- "${run_tmp:?}"/* 2>/dev/null || true
}

# check_leftovers PART: after a ctest run, nothing of its tests may be left. What is left is
# listed (with the files), fails PART, and is removed.
check_leftovers() {
    local part=$1 left tries=0
    # A daemon exits a moment after its umount: give stragglers a few seconds.
    while left=$(leftovers) && [ -n "$left" ] && [ $tries -lt 10 ]; do
        sleep 1
        tries=$((tries + 1))
    done
    left=$(printf '%s\n' "$left"; find "$run_tmp" -mindepth 1 -maxdepth 1 -printf 'file %p\n')
    left=$(grep -v '^$' <<<"$left" || true)
    [ -n "$left" ] || return 0
    echo "tests/run.sh: the tests of $part left behind (removed now):"
    sed 's/^/  /' <<<"$left"
    remove_leftovers
    failed="$failed${failed:+, }$part (left things behind)"
}

# Ctrl-C, SIGTERM, SIGHUP: each ctest run is a process group of its own (setsid), which the
# terminal's Ctrl-C does not reach. ctest is stopped first (SIGSTOP), so that it starts no
# more tests and keeps the pipes of their output open (a test writing into the pipe of a dead
# ctest dies of SIGPIPE in the middle of its teardown); then each test gets SIGTERM, tears down
# what it made (the mount tests' emergency teardown, the scripts' EXIT traps) and exits.
# Whatever still runs a minute and a half later is killed with ctest, and what is left in
# $run_tmp is removed.
ctest_group=""
background_builds=""
# tests_running: a process of the ctest group other than ctest itself still runs (not a zombie).
tests_running() {
    local pid
    for pid in $(pgrep -g "$ctest_group"); do
        [ "$pid" != "$ctest_group" ] || continue
        case $(ps -o stat= -p "$pid" 2>/dev/null) in Z* | "") ;; *) return 0 ;; esac
    done
    return 1
}
interrupted() {
    local signal=$1 waited=0 pid
    trap - INT TERM HUP
    set +e  # whatever fails here, the rest of the cleanup still runs
    echo
    echo "tests/run.sh: SIG$signal: ending the tests (each tears down what it made)"
    [ -z "$background_builds" ] || kill -TERM "$background_builds" 2>/dev/null
    if [ -n "$ctest_group" ]; then
        kill -STOP "$ctest_group" 2>/dev/null
        for pid in $(pgrep -g "$ctest_group"); do
            [ "$pid" = "$ctest_group" ] || kill -TERM "$pid" 2>/dev/null
        done
        while tests_running && [ $waited -lt 90 ]; do
            sleep 1
            waited=$((waited + 1))
        done
        kill -KILL -- "-$ctest_group" 2>/dev/null
    fi
    if [ -n "$run_tmp" ]; then
        local left
        left=$(leftovers)
        [ -z "$left" ] || printf 'tests/run.sh: removing what is left:\n%s\n' "$left"
        remove_leftovers
        rmdir "$run_tmp" 2>/dev/null || true
    fi
    echo "tests/run.sh: interrupted after $SECONDS s"
    case $signal in INT) exit 130 ;; HUP) exit 129 ;; *) exit 143 ;; esac
}
trap 'interrupted INT' INT
trap 'interrupted TERM' TERM
trap 'interrupted HUP' HUP

# ---------------------------------------------------------------------------------------------
# build_tree DIR SANITIZERS [TARGET...]: configures DIR with DIOFS_SANITIZE=SANITIZERS and builds
# the targets (all without any).
# With tree_libfuse_prefix set (tree_libfuse_prefix=DIR build_tree ...): against the libfuse3
# installed in DIR.
build_tree() {
    local dir=$1 sanitize=$2
    shift 2
    cmake -S "$repo" -B "$dir" -DDIOFS_WERROR=ON -DDIOFS_BUILD_TESTS=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDIOFS_SANITIZE="$sanitize" \
        -DDIOFS_LIBFUSE_PREFIX="${tree_libfuse_prefix:-}" >/dev/null &&
        cmake --build "$dir" -j"$(nproc)" ${1:+--target "$@"}
}

# run_tests DIR [CTEST ARGS...]: ctest in DIR, in a process group of its own (interrupted()),
# with this run's TMPDIR; then check_leftovers. When a test fails, its name and the end of its
# output are kept for summary(), which prints them last, where a log cut to its end still
# shows them.
failed_tests=""
test_environment=()
run_tests() {
    local dir=$1 result=0
    shift
    # ctest leaves an earlier run's list when nothing failed: not to be taken for this run's.
    rm -f "$dir/Testing/Temporary/LastTestsFailed.log"
    (cd "$dir" && exec env TMPDIR="$run_tmp" "${test_environment[@]}" \
        setsid ctest --output-on-failure --timeout 900 "$@") &
    ctest_group=$!
    wait "$ctest_group" || result=$?
    ctest_group=""
    [ "$result" = 0 ] || failed_tests="$failed_tests$(failed_test_ends "$dir")"
    check_leftovers "$(basename "$dir")"
    return "$result"
}

# failed_test_ends DIR: for each test ctest last noted as failed in DIR, its name and the last
# 40 lines of its output (from ctest's LastTest.log).
failed_test_ends() {
    local dir=$1 name
    local temporary=$dir/Testing/Temporary
    [ -f "$temporary/LastTestsFailed.log" ] || return 0
    while IFS=: read -r _ name; do
        printf '\n--- %s: %s, the end of its output:\n' "$(basename "$dir")" "$name"
        awk -v name="$name" '
            /^[0-9]+\/[0-9]+ Test: / { test = $0; sub(/^[^ ]+ Test: /, "", test); mine = test == name }
            mine && /^<end of output>$/ { exit }
            mine && out { print }
            mine && /^Output:$/ { getline; out = 1 }' "$temporary/LastTest.log" | tail -n 40
    done <"$temporary/LastTestsFailed.log"
}

# Both sanitizer trees, one after the other, then (with $second_libfuse) the tree built against
# the system's libfuse, at a lower priority than the tests running meanwhile. What timed()
# notes goes to RESULT: the times on the first line, the failures on the second. Only what the
# TSan run needs is built there.
build_sanitized() {
    local result=$1
    renice -n 10 -p "$BASHPID" >/dev/null
    times="" failed=""
    if $sanitizers; then
        tree_libfuse_prefix=$libfuse_prefix timed asan-build build_tree "$build-asan" \
            address,undefined
        tree_libfuse_prefix=$libfuse_prefix timed tsan-build build_tree "$build-tsan" thread \
            diofs_unit_tests diofs_mount_threads_tests
    fi
    if $second_libfuse; then
        timed "$second_name-build" build_tree "$build-$second_name" ""
    fi
    printf '%s\n%s\n' "$times" "$failed" >"$result"
}

# wanted VARIABLE PART: true unless VARIABLE is 0 in the environment; CI=true runs every part.
wanted() {
    [ "${!1:-1}" != 0 ] && return 0
    if [ "${CI:-}" = true ]; then
        echo "tests/run.sh: CI=true: the $2 in spite of $1=0"
        return 0
    fi
    echo "tests/run.sh: $1=0: no $2"
    return 1
}

# ---------------------------------------------------------------------------------------------
if $full; then
    tier="the full run (--full)"
    echo "tests/run.sh --full: every test, then the sanitizer and second libfuse trees:" \
        "about 40 minutes on 2 CPUs"
else
    tier="the quick run"
    echo "tests/run.sh: the quick tier, about 8 minutes on 2 CPUs" \
        "(tests/run.sh --full runs everything, about 40)"
fi

# shellcheck disable=SC2086 # a list of package names
diofs_install_missing_packages $diofs_cluster_test_packages
diofs_load_fuse
# The default libfuse (3.16 or newer), built first when the system has none.
libfuse_prefix=$(diofs_libfuse_prefix) || {
    echo "tests/run.sh: could not build libfuse 3.18.3 (mount_helpers/build-libfuse.sh)" >&2
    exit 1
}
system_libfuse=$(pkg-config --modversion fuse3)
if [ -n "$libfuse_prefix" ]; then
    echo "tests/run.sh: built against libfuse 3.18.3 in $libfuse_prefix" \
        "(the system has $system_libfuse)"
else
    echo "tests/run.sh: built against the system's libfuse $system_libfuse"
fi
tree_libfuse_prefix=$libfuse_prefix timed build build_tree "$build" ""
[ "$status" = 0 ] || summary
if [ "$(id -u)" = 0 ]; then
    cmake --install "$build" >/dev/null
else
    echo "tests/run.sh: not root: diofs is not installed, the mount tests will skip"
fi
make_run_tmp

sanitizers=false
second_libfuse=false
# The second libfuse: the system's, when the default is another one (fuse314 on Debian 12).
second_name=fuse$(sed -E 's/^3\.([0-9]+).*/3\1/' <<<"$system_libfuse")
if $full; then
    sanitizers=true
    wanted DIOFS_SANITIZERS "sanitizer builds" || sanitizers=false
    if [ -n "$libfuse_prefix" ]; then
        second_libfuse=true
        wanted DIOFS_SECOND_LIBFUSE "build and tests against the system's libfuse" ||
            second_libfuse=false
    fi
fi
# The sanitizer and second libfuse builds run beside the first tests, at a lower priority
# (build_sanitized).
built_result=$build/sanitizer-builds.result
built_log=$build/sanitizer-builds.log
if $sanitizers || $second_libfuse; then
    rm -f "$built_result"
    build_sanitized "$built_result" >"$built_log" 2>&1 &
    background_builds=$!
fi
# Two at a time: a test and its daemon mostly wait on each other and on the disk. The tests that
# need the page cache to themselves run alone (RUN_SERIAL) or one at a time (RESOURCE_LOCK).
if $full; then
    timed tests run_tests "$build" -j"$(nproc)" "$@"
else
    test_environment=("${quick_environment[@]}")
    timed tests run_tests "$build" -j"$(nproc)" -E "$full_only_regex" "$@"
    test_environment=()
fi
if ! $sanitizers && ! $second_libfuse; then
    rmdir "$run_tmp" 2>/dev/null || true
    summary
fi

waiting=$SECONDS
wait "$background_builds" || true
background_builds=""
built_times="sanitizer builds" built_failed="asan-build, tsan-build, $second_name-build"
if [ -f "$built_result" ]; then
    { read -r built_times && read -r built_failed; } <"$built_result" || true
fi
times="$times, $built_times (during the tests, then $((SECONDS - waiting)) s more)"
if [ -n "$built_failed" ]; then
    cat "$built_log"
    failed="$failed${failed:+, }$built_failed"
fi
# Each test of these takes about one CPU, and the page-cache tests run alone (RUN_SERIAL): two
# at a time. The e2e tests run the installed daemon: they are not repeated here. Of the dbopt
# differential runs, the ones on loop devices, on ramfs and the second strict one with a
# 4096-byte alignment are left out here (they drive the same code as the plain-directory runs
# kept, which include a 4096-byte alignment; about 2 minutes, to keep the suite under 30).
asan_skipped='DbOptDifferential\.((Strict|Coalescing)(Xfs|Ext4)On4KSectorLoopDevice|StrictPlainDirectoryWithDioAlign4096|RamfsFallback)$'
if $sanitizers; then
    case "$built_failed" in
    *asan-build*) ;;
    *) timed asan-tests run_tests "$build-asan" -j"$(nproc)" -L 'unit|mount' -E "$asan_skipped" "$@" ;;
    esac
    case "$built_failed" in
    *tsan-build*) ;;
    *) timed tsan-tests run_tests "$build-tsan" -j"$(nproc)" -L 'unit|mount-threads' "$@" ;;
    esac
fi
# Against the second libfuse: what the quick tier runs, less two kinds. The two builds differ in
# how the daemon meets the kernel (INIT's capabilities, KILLPRIV_V2's writes, shared mappings,
# io_uring, libfuse's own request loop), which every kind of test exercises once in the quick
# selection; the variants left to --full (other backings and alignments for the same dbopt
# code, more operations, the plain tools run) test the daemon's own code, which is the same in
# both builds, and run in the main tree (those on plain directories under ASan too). Left
# out: e2e.mount_command and e2e.umount_wait test the *installed* diofs through mount(8),
# umount(8) and the helpers in /sbin, which is the default build above; the cluster test
# (GlusterFS) uses the same requests as the mount tests, over a backing that is not a local
# disk.
if $second_libfuse; then
    case "$built_failed" in
    *"$second_name-build"*) ;;
    *)
        test_environment=("${quick_environment[@]}")
        timed "$second_name-tests" run_tests "$build-$second_name" -j"$(nproc)" -LE cluster \
            -E "$full_only_regex|^e2e\.(mount_command|umount_wait)\$" "$@"
        test_environment=()
        ;;
    esac
fi
rmdir "$run_tmp" 2>/dev/null || true
summary

#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the missing packages, builds with
# warnings as errors, installs diofs (the mount(8) and fstab tests use the installed helper,
# as a user would), and runs every test with ctest. Then the same code under sanitizers, each
# build in a directory of its own beside the first (made while the first tests run):
# AddressSanitizer with UndefinedBehaviorSanitizer (build-asan/: the unit and mount tests) and
# ThreadSanitizer (build-tsan/: the unit tests and the mount tests labelled mount-threads).
# Needs root for the real mounts; with CI=true a mount test that cannot run fails instead of
# skipping. DIOFS_SANITIZERS=0 skips the sanitizer builds, except under CI=true. Extra
# arguments go to every ctest run (tests/run.sh -R Streaming). Last, the same code built
# against libfuse 3.18.3 (mount_helpers/build-libfuse.sh, in build-fuse318/, built beside the
# first tests after the sanitizer trees) and its whole suite but the cluster tests and the
# tests of the installed build (below); DIOFS_LIBFUSE318=0 skips it, except under CI=true, and
# DIOFS_LIBFUSE318_PREFIX says where libfuse goes (default /opt/diofs-libfuse-3.18.3, kept for
# the next run). Each part says how long it took; the exit status is not 0 when any part failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=../mount_helpers/install-deps.sh
. "$repo/mount_helpers/install-deps.sh"
build=${DIOFS_BUILD_DIR:-$repo/build}
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

summary() {
    echo "tests/run.sh: $times; $SECONDS s in all"
    if [ -n "$failed" ]; then
        [ -z "$failed_tests" ] || printf 'tests/run.sh: the tests that failed:%s\n\n' "$failed_tests"
        echo "tests/run.sh: FAILED: $failed"
        exit 1
    fi
}

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

# run_tests DIR [CTEST ARGS...]: when a test fails, its name and the end of its output are
# kept for summary(), which prints them last, where a log cut to its end still shows them.
failed_tests=""
run_tests() {
    local dir=$1 result=0
    shift
    # ctest leaves an earlier run's list when nothing failed: not to be taken for this run's.
    rm -f "$dir/Testing/Temporary/LastTestsFailed.log"
    (cd "$dir" && ctest --output-on-failure --timeout 900 "$@") || result=$?
    [ "$result" = 0 ] || failed_tests="$failed_tests$(failed_test_ends "$dir")"
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

# Both sanitizer trees, one after the other, then (with $libfuse318) libfuse 3.18.3 and the
# tree built against it, at a lower priority than the tests running meanwhile. What timed()
# notes goes to RESULT: the times on the first line, the failures on the second. Only what the
# TSan run needs is built there.
build_sanitized() {
    local result=$1
    renice -n 10 -p "$BASHPID" >/dev/null
    times="" failed=""
    if $sanitizers; then
        timed asan-build build_tree "$build-asan" address,undefined
        timed tsan-build build_tree "$build-tsan" thread diofs_unit_tests diofs_mount_threads_tests
    fi
    if $libfuse318; then
        timed libfuse-3.18-build "$repo/mount_helpers/build-libfuse.sh" "$libfuse318_prefix"
        [ "$status" = 0 ] &&
            tree_libfuse_prefix=$libfuse318_prefix timed fuse318-build build_tree "$build-fuse318" ""
    fi
    printf '%s\n%s\n' "$times" "$failed" >"$result"
}

# shellcheck disable=SC2086 # a list of package names
diofs_install_missing_packages $diofs_cluster_test_packages
diofs_load_fuse
timed build build_tree "$build" ""
[ "$status" = 0 ] || summary
if [ "$(id -u)" = 0 ]; then
    cmake --install "$build" >/dev/null
else
    echo "tests/run.sh: not root: diofs is not installed, the mount tests will skip"
fi

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
sanitizers=true
wanted DIOFS_SANITIZERS "sanitizer builds" || sanitizers=false
libfuse318=true
wanted DIOFS_LIBFUSE318 "libfuse 3.18 build and tests" || libfuse318=false
libfuse318_prefix=${DIOFS_LIBFUSE318_PREFIX:-/opt/diofs-libfuse-3.18.3}
# The sanitizer and libfuse 3.18 builds run beside the first tests, at a lower priority
# (build_sanitized).
built_result=$build/sanitizer-builds.result
built_log=$build/sanitizer-builds.log
if $sanitizers || $libfuse318; then
    rm -f "$built_result"
    build_sanitized "$built_result" >"$built_log" 2>&1 &
    sanitized_builds=$!
fi
# Two at a time: a test and its daemon mostly wait on each other and on the disk. The tests that
# need the page cache to themselves run alone (RUN_SERIAL) or one at a time (RESOURCE_LOCK).
timed tests run_tests "$build" -j"$(nproc)" "$@"
$sanitizers || $libfuse318 || summary

waiting=$SECONDS
wait "$sanitized_builds" || true
built_times="sanitizer builds" built_failed="asan-build, tsan-build, fuse318-build"
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
# Against libfuse 3.18: every test of that tree but two kinds. e2e.mount_command and
# e2e.umount_wait test the *installed* diofs through mount(8), umount(8) and the helpers in
# /sbin, which is the 3.14 build above: run here they would test that one again (the helpers
# are the same scripts for both); e2e.debian_package packages a build that depends on Debian's
# libfuse3-3, which this tree's private libfuse is not. The cluster tests (GlusterFS, about 3
# minutes) use the same requests as the mount tests, over a backing that is not a local disk;
# nothing in them depends on libfuse's version.
if $libfuse318; then
    case "$built_failed" in
    *libfuse-3.18-build* | *fuse318-build*) ;;
    *) timed fuse318-tests run_tests "$build-fuse318" -j"$(nproc)" -LE cluster \
        -E '^e2e\.(mount_command|umount_wait|debian_package)$' "$@" ;;
    esac
fi
summary

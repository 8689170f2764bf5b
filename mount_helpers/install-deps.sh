# Sourced by mount_helpers/setup.sh and tests/run.sh: installs the Debian packages diofs needs to
# build, run and test that are not installed yet (nothing is installed twice, nothing upgraded).
# dpkg-dev and file: cpack -G DEB finds the package's dependencies with dpkg-shlibdeps.
diofs_packages="cmake make g++ pkg-config libfuse3-dev fuse3 libspdlog-dev libgtest-dev dpkg-dev file
    nlohmann-json3-dev
    python3 gzip tar zstd util-linux passwd procps psmisc attr xfsprogs e2fsprogs"
# Only for the cluster tests (tests/cluster): a GlusterFS volume and its clients on this machine.
diofs_cluster_test_packages="glusterfs-server glusterfs-client iproute2"

# diofs_install_missing_packages [PACKAGE...]: $diofs_packages and these.
diofs_install_missing_packages() {
    local missing="" p sudo=""
    for p in $diofs_packages "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "diofs: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    $sudo apt-get install -y -q --no-install-recommends $missing ||
        { $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends $missing; }
}

# /dev/fuse appears when the fuse module is loaded (built in on most kernels).
diofs_load_fuse() {
    [ -e /dev/fuse ] && return 0
    if [ "$(id -u)" = 0 ]; then modprobe fuse 2>/dev/null || true; else sudo modprobe fuse || true; fi
}

# diofs_libfuse_prefix: prints where the default build finds its libfuse: nothing for the
# system's when it is 3.16 or newer (the kernel's writeback cache needs FUSE_CAP_HANDLE_KILLPRIV_V2,
# which came with 3.16), else the prefix of libfuse 3.18.3, built there by build-libfuse.sh if it
# is not yet (its output goes to stderr). DIOFS_LIBFUSE=system builds against the system's
# whatever its version (Debian 12: 3.14, the second, tested build); DIOFS_LIBFUSE_PREFIX says
# where 3.18.3 goes (default /opt/diofs-libfuse-3.18.3).
diofs_libfuse_prefix() {
    if [ "${DIOFS_LIBFUSE:-}" = system ] || pkg-config --atleast-version=3.16 fuse3 2>/dev/null; then
        return 0
    fi
    local prefix=${DIOFS_LIBFUSE_PREFIX:-/opt/diofs-libfuse-3.18.3}
    "$(dirname "${BASH_SOURCE[0]}")/build-libfuse.sh" "$prefix" >&2 || return 1
    echo "$prefix"
}

#include "diofs/daemon.hpp"

#include "diofs/background_threads.hpp"
#include "diofs/caller_credentials.hpp"
#include "diofs/daemon_lock.hpp"
#include "diofs/filesystem.hpp"
#include "diofs/logging.hpp"
#include "diofs/operations.hpp"
#include "diofs/session_stop.hpp"
#include "diofs/syscalls.hpp"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>

namespace diofs {
namespace {

// Every inode the kernel holds keeps an O_PATH descriptor open, and every open file one or
// more: take all the room there is. What happened, for the log once the daemon logs where it
// will go on logging.
struct DescriptorLimit {
    rlim_t before = 0, now = 0, hard = 0;
    int error = 0;  // of setrlimit
};
DescriptorLimit raise_descriptor_limit() {
    DescriptorLimit d;
    rlimit limit;
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return d;
    d.before = d.now = limit.rlim_cur;
    d.hard = limit.rlim_max;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limit) == 0)
            d.now = limit.rlim_cur;
        else
            d.error = errno;
    }
    return d;
}

void log_descriptor_limit(const DescriptorLimit& d) {
    // Past the limit, lookups and opens fail with EMFILE; closes never do.
    if (d.error)
        spdlog::warn("descriptor limit stays at {}: it cannot be raised to the hard limit {} "
                     "({})",
                     d.now, d.hard, std::strerror(d.error));
    else if (d.now != d.before)
        spdlog::info("descriptor limit raised from {} to {} (the hard limit)", d.before, d.now);
    else
        spdlog::info("descriptor limit: {} (the hard limit)", d.now);
}

// `path` made absolute in `out`: 0, or -errno. -ENAMETOOLONG when the absolute path is longer
// than PATH_MAX - 1 bytes (realpath() into a PATH_MAX buffer).
int absolute_path(const std::string& path, std::string& out) {
    char resolved[PATH_MAX];
    if (!::realpath(path.c_str(), resolved))
        return -errno;
    out = resolved;
    return 0;
}

// Opens SOURCE, or says why it cannot be mirrored.
std::optional<UniqueFd> open_source(const std::string& source) {
    int fd = sys::openat(AT_FDCWD, source.c_str(), O_PATH | O_DIRECTORY);
    if (fd == -ENOTDIR)
        spdlog::error("SOURCE '{}' is not a directory", source);
    else if (fd < 0)
        spdlog::error("SOURCE '{}': {}", source, std::strerror(-fd));
    if (fd < 0)
        return std::nullopt;
    return UniqueFd(fd);
}

// The device MOUNTPOINT is on before the mount, or nothing (and why) when it cannot be a mount
// point.
std::optional<dev_t> check_mountpoint(const std::string& mountpoint) {
    struct stat st;
    if (::stat(mountpoint.c_str(), &st) != 0) {
        spdlog::error("MOUNTPOINT '{}': {}", mountpoint, std::strerror(errno));
        return std::nullopt;
    }
    if (!S_ISDIR(st.st_mode)) {
        spdlog::error("MOUNTPOINT '{}' is not a directory", mountpoint);
        return std::nullopt;
    }
    return st.st_dev;
}

bool same_file(const struct stat& a, const struct stat& b) {
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// The directory `levels` steps above the absolute path `path`, for a message.
std::string ancestor_path(std::string path, int levels) {
    for (; levels > 0 && path != "/"; --levels) {
        size_t slash = path.find_last_of('/');
        path.erase(slash == 0 ? 1 : slash);
    }
    return path;
}

// Opens the directory `name` in `dirfd` (O_PATH) into `dir`, with its attributes in `st`.
// Returns 0 or -errno.
int open_directory(int dirfd, const char* name, UniqueFd& dir, struct stat& st) {
    int fd = sys::openat(dirfd, name, O_PATH | O_DIRECTORY);
    if (fd < 0)
        return fd;
    dir = UniqueFd(fd);
    return sys::stat_path_fd(dir.get(), &st);
}

// A mount point inside the backing directory would make every lookup of it through the mount
// enter the mount again, until the daemon waits on itself (see Filesystem::lookup). Inside
// means: some directory above MOUNTPOINT, walking up by "..", is SOURCE, by device and inode,
// so a bind mount of SOURCE elsewhere counts too, whatever the paths say. MOUNTPOINT itself
// may be SOURCE (the daemon holds the directory it covers), and SOURCE may be inside
// MOUNTPOINT: neither makes a loop. Says why when it refuses.
bool check_outside_source(const Options& options, const struct stat& source_st) {
    auto cannot_tell = [&](int rv) {
        spdlog::error("MOUNTPOINT '{}': cannot tell whether it is inside SOURCE: {}",
                      options.mountpoint, std::strerror(-rv));
        return false;
    };
    UniqueFd dir;
    struct stat dir_st;
    if (int rv = open_directory(AT_FDCWD, options.mountpoint.c_str(), dir, dir_st); rv < 0)
        return cannot_tell(rv);
    for (int levels = 1;; ++levels) {
        UniqueFd parent;
        struct stat parent_st;
        if (int rv = open_directory(dir.get(), "..", parent, parent_st); rv < 0)
            return cannot_tell(rv);
        if (same_file(parent_st, dir_st))
            return true;  // the root: ".." of "/" is "/"
        if (same_file(parent_st, source_st)) {
            std::string through = ancestor_path(options.mountpoint, levels);
            spdlog::error("MOUNTPOINT '{}' is inside SOURCE '{}'{}: every lookup of it through "
                          "the mount would enter the mount again, and the daemon would wait on "
                          "itself; choose a mount point outside SOURCE",
                          options.mountpoint, options.source,
                          through == options.source
                              ? ""
                              : " (through '" + through + "', which is SOURCE)");
            return false;
        }
        dir = std::move(parent);
        dir_st = parent_st;
    }
}

// Sets `setting` of the mount's bdi (/sys/class/bdi/MAJOR:MINOR/) to `value`, unless it is
// so already. Needs root. Returns whether it holds `value`, and the value it has in `now`.
bool set_bdi(dev_t mount_device, const char* setting, uint64_t value, uint64_t& now) {
    const std::string path = "/sys/class/bdi/" + std::to_string(::major(mount_device)) + ":" +
                             std::to_string(::minor(mount_device)) + "/" + setting;
    const std::string want = std::to_string(value);
    char text[32] = {};
    if (UniqueFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC)); in && ::read(in.get(), text, sizeof text - 1) > 0)
        now = std::strtoull(text, nullptr, 10);
    if (now == value)
        return true;
    UniqueFd out(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!out || ::write(out.get(), want.data(), want.size()) != static_cast<ssize_t>(want.size()))
        return false;
    spdlog::debug("{}: {}", path, want);
    now = value;
    return true;
}

// The kernel reads a file of the mount ahead by the mount's bdi's read_ahead_kb (128 KiB by
// default) and by the max_readahead of the INIT reply, whichever is smaller when INIT is
// answered: the bdi's is set here, before the session starts, and INIT asks for the same.
// Needs root: otherwise the kernel's default stays (the window holds either way).
void set_kernel_read_ahead(dev_t mount_device, uint64_t bytes) {
    uint64_t now = 0;
    if (!set_bdi(mount_device, "read_ahead_kb", bytes >> 10, now))
        spdlog::info("cannot set the kernel's read-ahead of the mount to {} KiB ({}): it "
                     "stays at {} KiB",
                     bytes >> 10, std::strerror(errno), now);
}

// The writeback window's bound, before INIT: the mount's dirty pages and those being written
// back, held to its size by the kernel (the bdi's max_bytes, with the strict_limit every FUSE
// bdi has: the writer is throttled in balance_dirty_pages). Without it the window is not turned
// on: the kernel would let a FUSE mount dirty a share of all memory. Returns why the window
// cannot be had, or nothing: it was not asked for (writeback=0, not dbopt, strict,
// cache_window=0), or the bound is set.
std::optional<std::string> prepare_window(Filesystem& fs, dev_t own_device) {
    const uint64_t window = fs.options().writeback_window;
    if (!fs.kernel_pages() || window == 0)
        return std::nullopt;
    // Without coalescing (writebehind=0) every write() is to be on the backing file when it
    // returns, and no room is reserved for the window to hold: no window.
    if (fs.options().write_behind == 0)
        return "writebehind=0 puts every write() on the backing file when it returns";
#ifdef FUSE_CAP_HANDLE_KILLPRIV_V2
    uint64_t now = 0;
    if (set_bdi(own_device, "max_bytes", window, now)) {
        fs.window_bounded();
        return std::nullopt;
    }
    return fmt::format("cannot hold the mount's dirty pages to {} KiB (max_bytes of its bdi: {})",
                       window >> 10, std::strerror(errno));
#else
    (void)own_device;
    return fmt::format("this build's libfuse ({}.{}) has no HANDLE_KILLPRIV_V2 (3.16+)",
                       FUSE_MAJOR_VERSION, FUSE_MINOR_VERSION);
#endif
}

// With -o io_uring: the kernel offers FUSE over io_uring only while the fuse module's
// enable_uring is set (off by default in 6.18), and libfuse then quietly stays on /dev/fuse.
// The option only makes requests cheaper, so a mount (an fstab line at boot) does not fail for
// it: the log says why the mount runs without it and how to turn it on.
void check_kernel_io_uring() {
    constexpr const char* parameter = "/sys/module/fuse/parameters/enable_uring";
    char value[8] = {};
    UniqueFd in(::open(parameter, O_RDONLY | O_CLOEXEC));
    if (!in || ::read(in.get(), value, sizeof value - 1) <= 0) {
        spdlog::warn("io_uring: this kernel has no {} ({}): requests go through /dev/fuse",
                     parameter, std::strerror(errno));
        return;
    }
    if (value[0] != 'Y' && value[0] != '1')
        spdlog::warn("io_uring: the kernel's fuse module has it turned off ({} is {}): "
                     "requests go through /dev/fuse (echo 1 > {} turns it on for the mounts "
                     "made after)",
                     parameter, value[0], parameter);
}

// The device of the mount just made on `mountpoint`, which was on `before` until then. Asked
// without a request to the mount: the session loop does not run yet, and a request now would
// wait for it for ever.
std::optional<dev_t> mounted_device(const std::string& mountpoint, dev_t before) {
    dev_t dev;
    int rv = sys::cached_device_at(AT_FDCWD, mountpoint.c_str(), &dev);
    if (rv < 0)
        spdlog::error("cannot find the new mount on '{}': {}", mountpoint, std::strerror(-rv));
    else if (dev == before)
        spdlog::error("cannot find the new mount on '{}': something else is mounted over it",
                      mountpoint);
    if (rv < 0 || dev == before)
        return std::nullopt;
    return dev;
}

// FUSE worker threads. The kernel hands each request to the thread that has waited longest, so
// with many idle threads a sequential reader's requests go round all of them, each cold;
// measured on 2 CPUs (docs/benchmarks.md), dd bs=16K through dbopt reads about 1.5x faster
// with 2 threads than with libfuse's default of 10. Blocking work (read-ahead, writeouts) runs
// on the I/O threads, so few workers suffice: one per CPU, at least 2.
unsigned max_worker_threads(const Options& options) {
    if (options.max_threads)
        return options.max_threads;
    return std::max(2u, std::thread::hardware_concurrency());
}

struct SessionDeleter {
    void operator()(fuse_session* se) const noexcept { fuse_session_destroy(se); }
};
using Session = std::unique_ptr<fuse_session, SessionDeleter>;

// The steps of run_daemon, in its order.

// The process as the daemon needs it, before anything else. Returns what became of the
// descriptor limit, for the log once the daemon logs where it will go on logging.
DescriptorLimit prepare_process() {
    // Blocked before the mount exists, for every thread to come (background_threads.hpp).
    BackgroundThreads::block_stats_signal();
    CallerCredentials::init_process();
    // The kernel applies the caller's umask before it sends a mode; the daemon must not
    // apply its own on top.
    ::umask(0);
    return raise_descriptor_limit();
}

// SOURCE opened and its attributes, and the device MOUNTPOINT is on before the mount.
struct CheckedPaths {
    UniqueFd root_fd;
    struct stat root_st;
    dev_t mountpoint_dev;
};

// Checks SOURCE and MOUNTPOINT before anything is mounted, so that a bad path gives one clear
// message and no mount, and makes both absolute in `options`. Nothing (after the message) when
// one of them cannot be used.
std::optional<CheckedPaths> check_paths(Options& options) {
    auto root_fd = open_source(options.source);
    if (!root_fd)
        return std::nullopt;
    std::optional<dev_t> mountpoint_dev = check_mountpoint(options.mountpoint);
    if (!mountpoint_dev)
        return std::nullopt;
    // Absolute paths: /proc/mounts shows the source, and the daemon leaves its working
    // directory when it detaches, after which a relative mountpoint could not be unmounted.
    // Without fsname=, the kernel is given SOURCE's absolute path as the mount's source, which
    // it takes up to kMaxFsnameBytes: PATH_MAX - 1 too, so exactly the paths realpath() finds
    // too long are too long for the kernel.
    if (absolute_path(options.source, options.source) == -ENAMETOOLONG && !options.fsname) {
        spdlog::error("SOURCE '{}': its absolute path is longer than the {} bytes the kernel "
                      "takes as the source of a mount: name the mount with a shorter "
                      "-o fsname=NAME",
                      options.source, kMaxFsnameBytes);
        return std::nullopt;
    }
    absolute_path(options.mountpoint, options.mountpoint);

    struct stat root_st;
    if (int rv = sys::stat_path_fd(root_fd->get(), &root_st); rv < 0) {
        spdlog::error("SOURCE '{}': {}", options.source, std::strerror(-rv));
        return std::nullopt;
    }
    if (!check_outside_source(options, root_st))
        return std::nullopt;
    return CheckedPaths{std::move(*root_fd), root_st, *mountpoint_dev};
}

// The FUSE session of `fs`, with the arguments `options` make (options.hpp), and libfuse's
// handlers of SIGINT, SIGTERM and SIGHUP, which end its loop until serve() puts SessionStop's
// in their place. Null (after the message) when
// either cannot be had.
Session create_session(const Options& options, Filesystem& fs) {
    // libfuse copies the operations and every argument it keeps.
    const fuse_lowlevel_ops ops = make_operations();
    std::vector<std::string> arg_strings = fuse_arguments(options, ::geteuid() == 0);
    std::vector<char*> argv;
    for (auto& a : arg_strings)
        argv.push_back(a.data());
    fuse_args args = {static_cast<int>(argv.size()), argv.data(), 0};
    Session se(fuse_session_new(&args, &ops, sizeof ops, &fs));
    fuse_opt_free_args(&args);
    if (!se) {
        spdlog::error("cannot start a FUSE session (see the message above)");
        return nullptr;
    }
    fs.set_session(se.get());
    if (fuse_set_signal_handlers(se.get()) != 0) {
        spdlog::error("cannot install signal handlers");
        return nullptr;
    }
    return se;
}

// Mounts `se` on MOUNTPOINT (which was on the device `mountpoint_dev`): the mount's device.
// Nothing (after the message) when it cannot, and then nothing is left mounted and the signal
// handlers are removed.
std::optional<dev_t> mount_session(fuse_session* se, const Options& options,
                                   dev_t mountpoint_dev) {
    if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
        spdlog::error("cannot mount on '{}' (see the message above)", options.mountpoint);
        fuse_remove_signal_handlers(se);
        return std::nullopt;
    }
    // From here until the session loop runs, nothing may reach into the mount: the kernel
    // holds every request until the loop has answered INIT, so the request would wait for
    // ever.
    std::optional<dev_t> own_device = mounted_device(options.mountpoint, mountpoint_dev);
    if (!own_device) {
        fuse_session_unmount(se);
        fuse_remove_signal_handlers(se);
    }
    return own_device;
}

// What follows from the mount's device `own_device`: the filesystem refuses lookups that lead
// back into it, the kernel reads its files ahead by what KernelPages keeps, and the lock
// umount.fuse.diofs waits on is taken (returned: nothing when the daemon is not root).
// `window_off`: why the writeback window cannot be had when it is the default, for log_mount
// (a window asked for with writeback= is a warning at once, where the mount command shows it).
std::optional<DaemonLock> claim_mount(Filesystem& fs, dev_t own_device,
                                      std::optional<std::string>& window_off) {
    fs.set_own_device(own_device);
    std::optional<DaemonLock> unmount_lock = DaemonLock::take(own_device);
    if (const KernelPages* pages = fs.kernel_pages())
        set_kernel_read_ahead(own_device, pages->read_ahead());
    window_off = prepare_window(fs, own_device);
    if (window_off && fs.options().writeback_given) {
        fs.window_off(*window_off);
        window_off.reset();
    }
    return unmount_lock;
}

// Without -f: logs to syslog from now on and forks into the background, so nothing before may
// have started a thread (only the forking thread goes on in the child). The parent exits 0
// once the child runs; the mount already exists by then, so mount(8) returns only when the
// filesystem is usable. The lock file names the child.
void detach(const Options& options, const std::optional<DaemonLock>& unmount_lock) {
    if (options.foreground)
        return;
    log_to_syslog(options.log_level);
    fuse_daemonize(0);
    if (unmount_lock)
        unmount_lock->record_pid();
}

// What the mount is and how it will serve, in the log where the daemon goes on logging.
void log_mount(const Options& options, Filesystem& fs, const DescriptorLimit& descriptors,
               const std::optional<std::string>& window_off) {
    spdlog::info("{} mounted on {} (dbopt {})", options.source, options.mountpoint,
                 options.dbopt ? "on" : "off");
    log_descriptor_limit(descriptors);
    if (options.dbopt && fs.streaming())
        spdlog::info("dbopt: read-ahead {} KiB, coalescing {} KiB per open file; {} KiB of "
                     "buffers and {} I/O threads for the mount",
                     options.read_ahead >> 10, options.write_behind >> 10,
                     options.dbopt_mem >> 10, options.io_threads);
    if (const KernelPages* pages = fs.kernel_pages())
        spdlog::info("dbopt: files opened for reading go through the kernel's page cache, "
                     "{} KiB of it per open file at most (cache_window), read ahead {} KiB at a "
                     "time",
                     pages->window() >> 10, pages->read_ahead() >> 10);
    else if (options.dbopt)
        spdlog::info("dbopt: strict (every request one direct transfer)");
    if (window_off)
        fs.window_off(*window_off);
    if (!options.dbopt)
        return;
    DiscoveredAlignment root = fs.root_alignment();
    if (root.option_below_requirement)
        spdlog::warn("dio_align={} is below what {} needs: using {} (a smaller alignment "
                     "would fail every direct request)",
                     *options.dio_align, options.source, root.alignment->offset);
    if (root.alignment)
        spdlog::info("direct-I/O alignment of {}: {} bytes (memory {}), from the {}",
                     options.source, root.alignment->offset, root.alignment->memory,
                     to_string(root.source));
    else
        spdlog::warn("{} does not support direct I/O ({}): files are served buffered, "
                     "dropping their pages behind themselves",
                     options.source, to_string(root.source));
}

// Serves requests with libfuse's multi-threaded loop until the session ends (umount, SIGINT,
// SIGTERM, SIGHUP: session_stop.hpp), the mount's background threads started before and stopped after it, with
// the files the kernel still holds open written out and closed (background_threads.hpp).
// Returns the loop's result: 0, or -errno.
int serve(fuse_session* se, const Options& options, Filesystem& fs) {
    BackgroundThreads threads(fs);
    threads.start();
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(config, max_worker_threads(options));
    fuse_loop_cfg_set_clone_fd(config, options.clone_fd ? 1 : 0);
    SessionStop stop(se, fs, options.mountpoint.c_str());
    // 0, or -errno (a signal ends it through SessionStop, as fuse_session_exit does).
    const int rv = fuse_session_loop_mt(se, config);
    stop.loop_ended();
    fuse_loop_cfg_destroy(config);
    threads.stop();
    return rv;
}

// Unmounts, if umount has not, and removes the signal handlers: the exit status.
int end_session(fuse_session* se, const Options& options, int rv) {
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    if (rv < 0) {
        spdlog::error("session ended with an error: {}", std::strerror(-rv));
        return 1;
    }
    spdlog::info("{} unmounted", options.mountpoint);
    return 0;
}

}  // namespace

int run_daemon(const Options& given) {
    const DescriptorLimit descriptors = prepare_process();
    Options options = given;
    std::optional<CheckedPaths> paths = check_paths(options);
    if (!paths)
        return 1;
    if (options.io_uring)
        check_kernel_io_uring();
    // Declared before the filesystem, so let go after every backing descriptor is closed.
    std::optional<DaemonLock> unmount_lock;
    Filesystem fs(options, std::move(paths->root_fd), paths->root_st);
    // Declared after the filesystem, so destroyed before it.
    Session se = create_session(options, fs);
    if (!se)
        return 1;
    std::optional<dev_t> own_device = mount_session(se.get(), options, paths->mountpoint_dev);
    if (!own_device)
        return 1;
    std::optional<std::string> window_off;
    unmount_lock = claim_mount(fs, *own_device, window_off);
    detach(options, unmount_lock);
    log_mount(options, fs, descriptors, window_off);
    const int rv = serve(se.get(), options, fs);
    return end_session(se.get(), options, rv);
}

}  // namespace diofs

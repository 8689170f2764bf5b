#include "diofs/daemon.hpp"

#include "diofs/caller_credentials.hpp"
#include "diofs/filesystem.hpp"
#include "diofs/logging.hpp"
#include "diofs/operations.hpp"
#include "diofs/syscalls.hpp"

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>

namespace diofs {
namespace {

// Every inode the kernel holds keeps an O_PATH descriptor open: take all the room there is.
void raise_descriptor_limit() {
    rlimit limit;
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

std::optional<std::string> absolute_path(const std::string& path) {
    char resolved[PATH_MAX];
    if (!::realpath(path.c_str(), resolved))
        return std::nullopt;
    return std::string(resolved);
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

bool check_mountpoint(const std::string& mountpoint) {
    struct stat st;
    if (::stat(mountpoint.c_str(), &st) != 0) {
        spdlog::error("MOUNTPOINT '{}': {}", mountpoint, std::strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        spdlog::error("MOUNTPOINT '{}' is not a directory", mountpoint);
        return false;
    }
    return true;
}

// Logs the counters on SIGUSR1 (which every other thread blocks), until stop().
class StatsReporter {
public:
    explicit StatsReporter(Filesystem& fs) : fs_(fs), thread_([this] { run(); }) {}
    ~StatsReporter() {
        stopping_ = true;
        ::pthread_kill(thread_.native_handle(), SIGUSR1);
        thread_.join();
    }
    static void block_signal() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    }

private:
    void run() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        int sig;
        while (::sigwait(&set, &sig) == 0 && !stopping_) {
            if (Streaming* streaming = fs_.streaming()) {
                BufferPool::Counters c = streaming->pool.counters();
                spdlog::info("stats: inodes={} buffers_in_use={}K buffers_held={}K "
                             "buffers_peak={}K buffers_limit={}K",
                             fs_.inodes().size(), c.in_use >> 10, c.allocated >> 10,
                             c.peak >> 10, streaming->pool.limit() >> 10);
            } else {
                spdlog::info("stats: inodes={}", fs_.inodes().size());
            }
        }
    }
    Filesystem& fs_;
    std::atomic<bool> stopping_ = false;
    std::thread thread_;
};

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

}  // namespace

int run_daemon(const Options& given) {
    Options options = given;
    // Blocked before the mount exists, for every thread to come: a SIGUSR1 that arrives early
    // waits for the stats thread instead of killing the daemon (its default action).
    StatsReporter::block_signal();
    CallerCredentials::init_process();
    // The kernel applies the caller's umask before it sends a mode; the daemon must not
    // apply its own on top.
    ::umask(0);
    raise_descriptor_limit();

    auto root_fd = open_source(options.source);
    if (!root_fd)
        return 1;
    if (!check_mountpoint(options.mountpoint))
        return 1;
    // Absolute paths: /proc/mounts shows the source, and the daemon leaves its working
    // directory when it detaches, after which a relative mountpoint could not be unmounted.
    options.source = absolute_path(options.source).value_or(options.source);
    options.mountpoint = absolute_path(options.mountpoint).value_or(options.mountpoint);

    struct stat root_st;
    if (int rv = sys::stat_path_fd(root_fd->get(), &root_st); rv < 0) {
        spdlog::error("SOURCE '{}': {}", options.source, std::strerror(-rv));
        return 1;
    }
    Filesystem fs(options, std::move(*root_fd), root_st);
    fuse_lowlevel_ops ops = make_operations();

    std::vector<std::string> arg_strings = fuse_arguments(options, ::geteuid() == 0);
    std::vector<char*> argv;
    for (auto& a : arg_strings)
        argv.push_back(a.data());
    fuse_args args = {static_cast<int>(argv.size()), argv.data(), 0};
    std::unique_ptr<fuse_session, SessionDeleter> se(
        fuse_session_new(&args, &ops, sizeof ops, &fs));
    fuse_opt_free_args(&args);
    if (!se) {
        spdlog::error("cannot start a FUSE session (see the message above)");
        return 1;
    }
    if (fuse_set_signal_handlers(se.get()) != 0) {
        spdlog::error("cannot install signal handlers");
        return 1;
    }
    if (fuse_session_mount(se.get(), options.mountpoint.c_str()) != 0) {
        spdlog::error("cannot mount on '{}' (see the message above)", options.mountpoint);
        fuse_remove_signal_handlers(se.get());
        return 1;
    }
    if (!options.foreground) {
        log_to_syslog(options.log_level);
        // The parent exits 0 once the child runs; the mount already exists by then, so
        // mount(8) returns only when the filesystem is usable.
        fuse_daemonize(0);
    }
    spdlog::info("{} mounted on {} (dbopt {})", options.source, options.mountpoint,
                 options.dbopt ? "on" : "off");
    if (options.dbopt && fs.streaming())
        spdlog::info("dbopt: read-ahead {} KiB, coalescing {} KiB per open file; {} KiB of "
                     "buffers and {} I/O threads for the mount",
                     options.read_ahead >> 10, options.write_behind >> 10,
                     options.dbopt_mem >> 10, options.io_threads);
    else if (options.dbopt)
        spdlog::info("dbopt: strict (every request one direct transfer)");
    if (options.dbopt) {
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

    int rv;
    {
        StatsReporter stats(fs);
        fuse_loop_config* config = fuse_loop_cfg_create();
        fuse_loop_cfg_set_max_threads(config, max_worker_threads(options));
        fuse_loop_cfg_set_clone_fd(config, options.clone_fd ? 1 : 0);
        rv = fuse_session_loop_mt(se.get(), config);
        fuse_loop_cfg_destroy(config);
    }
    // Told to stop with files still open: what they hold back goes out before the mount does.
    if (Streaming* streaming = fs.streaming())
        streaming->settle_all();
    // Their releases will never come: closed as release closes them, before the mount goes, so
    // that the backing files are no longer held open once it is gone.
    if (size_t open = fs.handles().close_all())
        spdlog::info("session ends: closed {} files and directories the kernel still held open",
                     open);
    fuse_session_unmount(se.get());
    fuse_remove_signal_handlers(se.get());
    if (rv < 0) {
        spdlog::error("session ended with an error: {}", std::strerror(-rv));
        return 1;
    }
    spdlog::info("{} unmounted", options.mountpoint);
    return 0;
}

}  // namespace diofs

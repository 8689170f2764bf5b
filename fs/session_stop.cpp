#include "diofs/session_stop.hpp"

#include "diofs/filesystem.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>

namespace diofs {
namespace {

constexpr int kSignals[3] = {SIGTERM, SIGINT, SIGHUP};

// The one instance the handlers reach (a process serves one session).
std::atomic<SessionStop*> instance = nullptr;

// The mount's connection directory in fusectl; nothing without the mount's device.
std::optional<std::string> connection_of(const Filesystem& fs) {
    const std::optional<dev_t> dev = fs.own_device();
    if (!dev)
        return std::nullopt;
    return "/sys/fs/fuse/connections/" + std::to_string(*dev);
}

}  // namespace

SessionStop::SessionStop(fuse_session* se, Filesystem& fs, const char* mountpoint)
    : se_(se), fs_(fs), mountpoint_(mountpoint), loop_thread_(::pthread_self()),
      wake_(::eventfd(0, EFD_CLOEXEC)) {
    if (!wake_)
        spdlog::warn("cannot make an eventfd ({}): a signal ends the session at once, without "
                     "writing back what the kernel holds",
                     std::strerror(errno));
    instance.store(this);
    struct sigaction sa = {};
    sa.sa_handler = &SessionStop::on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < std::size(kSignals); ++i)
        ::sigaction(kSignals[i], &sa, &before_[i]);
    // Without the eventfd nothing could wake the thread: the handlers end the loop themselves.
    if (wake_)
        thread_ = std::thread([this] { run(); });
}

SessionStop::~SessionStop() {
    loop_ended();
    for (size_t i = 0; i < std::size(kSignals); ++i)
        ::sigaction(kSignals[i], &before_[i], nullptr);
    instance.store(nullptr);
}

// Async-signal-safe: an eventfd write, libfuse's own end of the loop (an atomic store and, in
// libfuse 3.18, a sem_post), pthread_kill.
void SessionStop::on_signal(int sig) {
    SessionStop* self = instance.load();
    if (!self)
        return;
    const int saved_errno = errno;
    if (self->signals_.fetch_add(1) == 0 && self->wake_) {
        const uint64_t one = 1;
        (void)!::write(self->wake_.get(), &one, sizeof one);
    } else {
        // A second signal, or the thread ending the loop: at once. The loop's thread waits in
        // sem_wait, which a signal on it interrupts (libfuse before 3.18 does not post it).
        fuse_session_exit(self->se_);
        if (!::pthread_equal(::pthread_self(), self->loop_thread_))
            ::pthread_kill(self->loop_thread_, sig);
    }
    errno = saved_errno;
}

void SessionStop::run() {
    // The handlers run on the loop's thread or another: not on this one, so that a signal
    // never interrupts the write back it makes.
    sigset_t set;
    sigemptyset(&set);
    for (const int sig : kSignals)
        sigaddset(&set, sig);
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    uint64_t count = 0;
    while (::read(wake_.get(), &count, sizeof count) < 0 && errno == EINTR) {
    }
    if (ended_.load())
        return;
    if (fs_.writeback()) {
        const std::optional<std::string> connection = connection_of(fs_);
        // Only while the kernel still has the connection: a mount whose loop ended would hang
        // the syncfs.
        if (connection && ::access(connection->c_str(), F_OK) == 0 && begin_write_back()) {
            write_back();
            std::lock_guard lock(mutex_);
            writing_back_ = false;
        }
    }
    // As a second signal ends it, until the loop has returned (a signal sent before the loop's
    // thread waited is lost).
    while (!ended_.load()) {
        ::pthread_kill(loop_thread_, SIGTERM);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

// The kernel's dirty pages of the mount written back: syncfs sends them (and the files'
// times), then each file the window's writers have open is dropped from the kernel, which
// writes back and waits for each of its pages still dirty or under writeback (the waiting
// syncfs does not do for a FUSE mount).
void SessionStop::write_back() {
    spdlog::info("writing back what the kernel holds of the mount before it ends");
    // The directory this opens is closed again before the loop ends (its RELEASEDIR served),
    // so that the count of what the kernel held open at the end stays true.
    const size_t open_before = fs_.handles().count();
    {
        UniqueFd mount(::open(mountpoint_, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!mount || ::syncfs(mount.get()) != 0)
            spdlog::error("the write back of the mount before it ends failed: {}",
                          std::strerror(errno));
    }
    for (Inode* inode : fs_.inodes().writing())
        if (const int error = fuse_lowlevel_notify_inval_inode(se_, fs_.ino_of(*inode), 0, 0);
            error != 0 && error != -ENOENT)
            spdlog::error("the write back of a file before the mount ends failed: {}",
                          std::strerror(-error));
    for (int i = 0; i < 100 && fs_.handles().count() > open_before; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void SessionStop::abort_connection() const {
    const std::optional<std::string> connection = connection_of(fs_);
    if (!connection)
        return;
    UniqueFd abort(::open((*connection + "/abort").c_str(), O_WRONLY | O_CLOEXEC));
    if (!abort || ::write(abort.get(), "1", 1) != 1)
        return;
    spdlog::warn("the session ended while the kernel's pages were being written back: the "
                 "connection was aborted, and what the kernel still held is lost");
}

bool SessionStop::begin_write_back() {
    std::lock_guard lock(mutex_);
    if (ended_.load())
        return false;
    writing_back_ = true;
    return true;
}

void SessionStop::loop_ended() {
    {
        std::lock_guard lock(mutex_);
        if (ended_.exchange(true))
            return;
        if (writing_back_)
            abort_connection();
    }
    if (wake_) {
        const uint64_t one = 1;
        (void)!::write(wake_.get(), &one, sizeof one);
    }
    if (thread_.joinable())
        thread_.join();
}

}  // namespace diofs

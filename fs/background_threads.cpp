#include "diofs/background_threads.hpp"

#include "diofs/filesystem.hpp"
#include "diofs/stats.hpp"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <utility>

namespace diofs {
namespace {

sigset_t stats_signal() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    return set;
}

}  // namespace

void BackgroundThreads::block_stats_signal() {
    const sigset_t set = stats_signal();
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void BackgroundThreads::start() {
    if (const int error = fs_.lock_waiters().start(); error != 0)
        spdlog::warn("cannot start the thread that waits for locks ({}): blocking locks are "
                     "refused with ENOLCK until it can",
                     std::strerror(error));
    // Blocked in the stats thread from its first instruction, whatever the caller blocks:
    // sigwait() takes a signal only while it is blocked, and stop() sends one at any time.
    const sigset_t set = stats_signal();
    sigset_t before;
    ::pthread_sigmask(SIG_BLOCK, &set, &before);
    try {
        stats_ = std::thread([this] { report_stats(); });
    } catch (...) {
        ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
        throw;
    }
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

// Logs the stats at each SIGUSR1, until stop().
void BackgroundThreads::report_stats() {
    const sigset_t set = stats_signal();
    int sig;
    while (::sigwait(&set, &sig) == 0 && !stats_stopping_)
        spdlog::info("stats: {}", stats_log_line(stats_json(fs_)));
}

void BackgroundThreads::stop() {
    if (std::exchange(stopped_, true))
        return;
    if (stats_.joinable()) {
        stats_stopping_ = true;
        ::pthread_kill(stats_.native_handle(), SIGUSR1);
        stats_.join();
    }
    if (KernelPages* pages = fs_.kernel_pages())
        pages->stop();
    fs_.lock_waiters().stop();
    Streaming* streaming = fs_.streaming();
    if (streaming)
        streaming->settle_all();
    if (size_t open = fs_.handles().close_all())
        spdlog::info("session ends: closed {} files and directories the kernel still held open",
                     open);
    if (streaming)
        streaming->workers.stop();
}

}  // namespace diofs

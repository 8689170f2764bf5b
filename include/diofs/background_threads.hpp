#pragma once
// The threads a mount runs besides libfuse's workers, with the one place that starts them and
// the one order in which they stop:
//   - the thread that waits for locks (LockWaiters, record_locks.hpp);
//   - the thread that logs the stats on SIGUSR1 (stats.hpp), which every other thread blocks;
//   - the thread that drops the kernel's pages of the mount's files (KernelPages), started by
//     its first drop, and the I/O threads of read-ahead and coalescing (IoWorkers, in
//     Streaming), started by their first task: both only ever from a request, so in the
//     session loop.
// Threads do not survive a fork: the daemon forks into the background (fuse_daemonize) after
// the mount exists, so start() comes after that, and nothing before it may start a thread.

#include <atomic>
#include <thread>

namespace diofs {

class Filesystem;

class BackgroundThreads {
public:
    // Blocks SIGUSR1 in the calling thread, and so in every thread started from it after:
    // called before the mount exists, so that a SIGUSR1 that comes early waits for the stats
    // thread instead of killing the daemon (its default action).
    static void block_stats_signal();

    explicit BackgroundThreads(Filesystem& fs) : fs_(fs) {}
    // stop(), if it has not run.
    ~BackgroundThreads() { stop(); }
    BackgroundThreads(const BackgroundThreads&) = delete;
    BackgroundThreads& operator=(const BackgroundThreads&) = delete;

    // Starts the lock waits' thread (a failure is logged: blocking locks are refused with
    // ENOLCK until a wait can start it) and the stats thread. In the process that serves the
    // mount: after fuse_daemonize.
    void start();

    // At the end of the session loop (libfuse's workers are joined: no request is being
    // served or will be), in this order:
    //   1. the stats thread, which reads the state the next steps take apart;
    //   2. the page drops: no notification after the loop, the kernel may be gone; the drops
    //      not made are forgotten;
    //   3. the lock waits: they end without an answer (no reply after the loop either), before
    //      the files their attempts lock through are closed;
    //   4. the open files the kernel still holds (its releases will never come): what they hold
    //      back written out, then each closed as release closes it, which waits for its own
    //      I/O tasks: both need the I/O threads;
    //   5. the I/O threads, which no file is left to use.
    // Then the mount can go. Runs once; a second call does nothing.
    void stop();

private:
    void report_stats();

    Filesystem& fs_;
    bool stopped_ = false;
    std::atomic<bool> stats_stopping_ = false;
    std::thread stats_;  // started by start()
};

}  // namespace diofs

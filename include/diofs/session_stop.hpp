#pragma once
// How a signal (SIGTERM, as a service manager stops the daemon; SIGINT; SIGHUP) ends the
// session. libfuse's own handlers end the loop at once; then under the writeback window the
// kernel's dirty pages of the mount, bytes of write()s that returned, would go with the
// connection, and so would a writeback WRITE a worker read after the loop was told to end
// (libfuse drops those unanswered). So the handlers here only wake a thread; the loop goes on
// serving while that thread writes back what the kernel holds of the mount and waits until it
// has been written (syncfs alone does not wait for a FUSE mount's writeback on this kernel),
// and only then ends the loop. Without the window the loop ends as soon as the thread wakes.
//
// A second signal ends the loop at once, whatever is still being written back: then, and
// whenever the loop ends another way (umount) during the write back, the connection is aborted
// (fusectl), so that no thread of the daemon waits for ever for a reply the ended loop will not
// give; what the kernel still held is lost, as with kill -9.

#include "diofs/unique_fd.hpp"

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace diofs {

class Filesystem;

class SessionStop {
public:
    // Installs the handlers of SIGTERM, SIGINT and SIGHUP, in place of libfuse's, and starts
    // the thread. Called by the thread that then runs the session loop, right before it.
    SessionStop(fuse_session* se, Filesystem& fs, const char* mountpoint);
    // loop_ended(), if it has not run; the handlers before are back.
    ~SessionStop();
    SessionStop(const SessionStop&) = delete;
    SessionStop& operator=(const SessionStop&) = delete;

    // After the session loop returned: joins the thread (aborting the connection first when the
    // thread is still writing back). Runs once.
    void loop_ended();

private:
    static void on_signal(int sig);
    void run();
    // Whether the write back may begin: not once the loop has ended.
    bool begin_write_back();
    void write_back();
    void abort_connection() const;

    fuse_session* const se_;
    Filesystem& fs_;
    const char* const mountpoint_;
    const pthread_t loop_thread_;
    UniqueFd wake_;  // an eventfd: the first signal, or loop_ended()
    std::atomic<int> signals_ = 0;
    // Guards writing_back_ and the change of ended_: the loop that ended while the thread
    // writes back aborts the connection, or the write back does not begin.
    std::mutex mutex_;
    std::atomic<bool> ended_ = false;
    bool writing_back_ = false;
    struct sigaction before_[3] = {};
    std::thread thread_;
};

}  // namespace diofs

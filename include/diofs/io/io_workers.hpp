#pragma once
// The threads that do dbopt's asynchronous I/O: read-ahead reads and the writing out of
// coalesced writes. A fixed number (-o io_threads), fed from one first-in-first-out queue, so
// a mount never has more direct requests of its own in flight than it has workers. A task
// is a short function that does one transfer and reports to the file it belongs to; files
// wait for their own tasks before they go away.

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace diofs {

class IoWorkers {
public:
    // The threads start with the first task: the daemon forks when it detaches, after the
    // mount's state exists, and threads do not survive a fork.
    explicit IoWorkers(unsigned threads);
    ~IoWorkers() { stop(); }
    IoWorkers(const IoWorkers&) = delete;
    IoWorkers& operator=(const IoWorkers&) = delete;

    // Queues `task`. Posting after stop() is a broken invariant (the task would never run, and
    // its file would wait for it for ever): the daemon aborts.
    void post(std::function<void()> task);
    // Runs what is queued, then ends the threads: at the end of the session, once every open
    // file, which posts the tasks and waits for its own, has gone (background_threads.hpp).
    void stop();

private:
    void run();

    const unsigned count_;
    // Guards queue_, stopping_ and threads_.
    std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<std::function<void()>> queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace diofs

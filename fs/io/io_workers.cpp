#include "diofs/io/io_workers.hpp"

#include "diofs/error_boundary.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace diofs {

IoWorkers::IoWorkers(unsigned threads) : count_(threads) {}

void IoWorkers::stop() {
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        threads.swap(threads_);
    }
    ready_.notify_all();
    for (auto& t : threads)
        t.join();
}

void IoWorkers::post(std::function<void()> task) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) {
            spdlog::critical("a task is posted to the I/O threads after they stopped");
            std::abort();
        }
        queue_.push_back(std::move(task));
        if (threads_.empty())
            for (unsigned i = 0; i < count_; ++i)
                threads_.emplace_back([this] { run(); });
    }
    ready_.notify_one();
}

void IoWorkers::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty())
            return;  // stopping, and nothing left to do
        auto task = std::move(queue_.front());
        queue_.pop_front();
        lock.unlock();
        // Tasks keep their own errors (a writeout's becomes its file's); this is the last
        // boundary, so that nothing a task lets through ends the daemon.
        try {
            task();
        } catch (...) {
            current_exception_errno("a task of an I/O thread");
        }
        lock.lock();
    }
}

}  // namespace diofs

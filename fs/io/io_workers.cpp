#include "diofs/io_workers.hpp"

namespace diofs {

IoWorkers::IoWorkers(unsigned threads) : count_(threads) {}

IoWorkers::~IoWorkers() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_)
        t.join();
}

void IoWorkers::post(std::function<void()> task) {
    {
        std::lock_guard lock(mutex_);
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
        task();
        lock.lock();
    }
}

}  // namespace diofs

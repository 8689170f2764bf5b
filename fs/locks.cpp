#include "diofs/locks.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace diofs {

PosixLocks::Descriptor PosixLocks::of(uint64_t owner, const Open& open, int& error) {
    error = 0;
    if (Descriptor d = find(owner))
        return d;
    // Opened without the lock: an open of a network file may take a while.
    const int fd = open();
    if (fd < 0) {
        error = fd;
        return nullptr;
    }
    auto made = std::make_shared<const UniqueFd>(fd);
    std::lock_guard lock(mutex_);
    // Another request of the same owner may have made one meanwhile: the first one stays.
    return owners_.try_emplace(owner, std::move(made)).first->second;
}

PosixLocks::Descriptor PosixLocks::find(uint64_t owner) const {
    std::lock_guard lock(mutex_);
    auto it = owners_.find(owner);
    return it == owners_.end() ? nullptr : it->second;
}

void PosixLocks::release(uint64_t owner) {
    Descriptor gone;  // closed after the lock is released
    std::lock_guard lock(mutex_);
    if (auto it = owners_.find(owner); it != owners_.end()) {
        gone = std::move(it->second);
        owners_.erase(it);
    }
}

size_t PosixLocks::owners() const {
    std::lock_guard lock(mutex_);
    return owners_.size();
}

bool LockWaiters::busy(int rv) { return rv == -EAGAIN || rv == -EACCES || rv == -EWOULDBLOCK; }

void LockWaiters::wait(Attempt attempt, std::function<bool()> interrupted,
                       std::function<void(int)> done) {
    std::unique_lock lock(mutex_);
    if (stopping_)
        return;
    reap_locked();
    if (waiters_.size() >= kMostWaiting) {
        lock.unlock();
        return done(-ENOLCK);
    }
    Waiter& waiter = waiters_.emplace_back();
    waiter.thread = std::thread([this, &waiter, attempt = std::move(attempt),
                                 interrupted = std::move(interrupted), done = std::move(done)] {
        auto pause = std::chrono::milliseconds(1);
        int rv = attempt();
        while (busy(rv) && !stopping_) {
            if (interrupted()) {
                rv = -EINTR;
                break;
            }
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(50));
            rv = attempt();
        }
        if (!stopping_)
            done(rv);
        waiter.finished = true;
    });
}

void LockWaiters::reap_locked() {
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->finished) {
            it->thread.join();
            it = waiters_.erase(it);
        } else {
            ++it;
        }
    }
}

void LockWaiters::stop() {
    std::list<Waiter> all;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        all.splice(all.end(), waiters_);
    }
    for (Waiter& w : all)
        if (w.thread.joinable())
            w.thread.join();
}

size_t LockWaiters::waiting() const {
    std::lock_guard lock(mutex_);
    return static_cast<size_t>(
        std::count_if(waiters_.begin(), waiters_.end(), [](const Waiter& w) { return !w.finished; }));
}

}  // namespace diofs

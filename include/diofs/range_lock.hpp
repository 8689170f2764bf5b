#pragma once
// A byte-range lock for one inode. Writers of overlapping ranges wait for each other; writers
// of disjoint ranges do not, so aligned direct writes of different blocks run side by side.
// Used by the direct-I/O engine, which locks whole lock units (the larger of the page size
// and the direct-I/O alignment) so that two writers of different bytes of one sector or page
// never read-modify-write it at the same time.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

namespace diofs {

class RangeLock {
public:
    class Guard {
    public:
        Guard(RangeLock& lock, uint64_t begin, uint64_t end) : lock_(&lock), begin_(begin), end_(end) {}
        Guard(Guard&& other) noexcept
            : lock_(std::exchange(other.lock_, nullptr)), begin_(other.begin_), end_(other.end_) {}
        Guard(const Guard&) = delete;
        Guard& operator=(const Guard&) = delete;
        Guard& operator=(Guard&&) = delete;
        ~Guard() {
            if (lock_)
                lock_->unlock(begin_, end_);
        }

    private:
        RangeLock* lock_;
        uint64_t begin_, end_;
    };

    // Waits until no held range overlaps [begin, end), then holds it until the guard dies.
    [[nodiscard]] Guard lock(uint64_t begin, uint64_t end);

    size_t held() const;

private:
    void unlock(uint64_t begin, uint64_t end);

    // Guards held_; taken alone, never across I/O (callers wait on released_ instead).
    mutable std::mutex mutex_;
    std::condition_variable released_;
    std::vector<std::pair<uint64_t, uint64_t>> held_;
};

}  // namespace diofs

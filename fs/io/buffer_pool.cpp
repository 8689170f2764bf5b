#include "diofs/io/buffer_pool.hpp"

#include <algorithm>

namespace diofs {

BufferPool::BufferPool(size_t chunk, size_t alignment, size_t limit)
    : chunk_(chunk), alignment_(alignment), limit_(limit) {}

std::optional<AlignedBuffer> BufferPool::take() {
    std::unique_lock lock(mutex_);
    if (counters_.in_use + chunk_ > limit_)
        return std::nullopt;
    counters_.in_use += chunk_;
    counters_.peak = std::max(counters_.peak, counters_.in_use);
    if (!free_.empty()) {
        AlignedBuffer buffer = std::move(free_.back());
        free_.pop_back();
        return buffer;
    }
    counters_.allocated += chunk_;
    lock.unlock();
    try {
        return AlignedBuffer(alignment_, chunk_);
    } catch (const std::bad_alloc&) {
        lock.lock();
        counters_.in_use -= chunk_;
        counters_.allocated -= chunk_;
        return std::nullopt;
    }
}

void BufferPool::give(AlignedBuffer buffer) {
    if (!buffer.data())
        return;
    std::lock_guard lock(mutex_);
    counters_.in_use -= chunk_;
    free_.push_back(std::move(buffer));
}

BufferPool::Counters BufferPool::counters() const {
    std::lock_guard lock(mutex_);
    return counters_;
}

}  // namespace diofs

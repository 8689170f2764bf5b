#pragma once
// The memory of read-ahead and write coalescing: equal, aligned chunks, shared by every open
// file of a mount, never more than the mount's limit (-o dbopt_mem). A chunk given back is kept
// for the next taker instead of being freed, so a mount that streams holds a steady amount of
// memory and does not map and unmap a megabyte per request.
//
// take() never waits: a file that gets nothing reads or writes without a buffer, as strict
// dbopt does, and memory stays bounded whatever the number of open files.

#include "diofs/io/aligned_buffer.hpp"

#include <cstddef>
#include <mutex>
#include <optional>
#include <vector>

namespace diofs {

class BufferPool {
public:
    // `chunk` bytes each, aligned to `alignment` (a power of two, at least the direct-I/O
    // memory alignment); at most `limit` bytes in all.
    BufferPool(size_t chunk, size_t alignment, size_t limit);

    size_t chunk() const { return chunk_; }
    size_t limit() const { return limit_; }

    // A chunk, or nothing when the limit is reached.
    std::optional<AlignedBuffer> take();
    void give(AlignedBuffer buffer);

    struct Counters {
        size_t in_use = 0;     // bytes taken and not given back
        size_t allocated = 0;  // bytes of memory held (in use and kept for reuse)
        size_t peak = 0;       // the most ever in use at once
    };
    Counters counters() const;

private:
    const size_t chunk_;
    const size_t alignment_;
    const size_t limit_;
    // Guards everything below; never held across an allocation's use or any I/O.
    mutable std::mutex mutex_;
    std::vector<AlignedBuffer> free_;
    Counters counters_;
};

// A chunk taken from a pool, given back when the object dies.
class PooledBuffer {
public:
    PooledBuffer(BufferPool& pool, AlignedBuffer buffer) : pool_(&pool), buffer_(std::move(buffer)) {}
    ~PooledBuffer() { pool_->give(std::move(buffer_)); }
    PooledBuffer(const PooledBuffer&) = delete;
    PooledBuffer& operator=(const PooledBuffer&) = delete;

    char* data() const { return buffer_.data(); }
    size_t size() const { return pool_->chunk(); }

private:
    BufferPool* pool_;
    AlignedBuffer buffer_;
};

}  // namespace diofs

#pragma once
// Write coalescing for one open dbopt file. Contiguous writes are copied into a chunk from the
// mount's BufferPool; a full chunk is handed to the I/O workers and written out as one large
// direct write while the next one fills. A chunk that starts off alignment is cut back to the
// last aligned boundary when full and its odd end carried into the next chunk, so a long
// stream has at most one bounce at its start and one at its end.
//
// What is pending is written out: when a chunk is full; on a write that does not continue the
// stream; on settle() (fsync, flush at close, release, and any read, setattr or other change
// of the inode through the mount, through InodeIo). Chunks of one file are written in file
// order by one worker at a time, so the bytes on the device are always a prefix of what was
// written, followed by nothing: when one fails, everything pending after it is dropped.
//
// Errors: a failed writeout is reported by the file's next write (which then writes nothing),
// and by its next take_error() (fsync, flush): never lost, never a success. What reached the
// backing file before the failure stays there.

#include "diofs/buffer_pool.hpp"
#include "diofs/caller_credentials.hpp"
#include "diofs/io_workers.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace diofs {

class WriteBehind {
public:
    // Writes [offset, offset + length) of `buf` to the backing file (any alignment; `buf` is a
    // pool chunk): a count, short only with an error to follow, or -errno.
    using Sink = std::function<ssize_t(const char* buf, size_t length, uint64_t offset)>;

    // At most `window` bytes (whole chunks, at least two: one filling while one is written)
    // pending per file; `alignment` is
    // the direct-I/O alignment of the file.
    WriteBehind(Sink sink, BufferPool& pool, IoWorkers& workers, uint64_t window,
                uint32_t alignment);
    // Writes out what is pending and waits (an error is then only logged: nobody is left to
    // tell; release comes after flush, which reported it).
    ~WriteBehind();
    WriteBehind(const WriteBehind&) = delete;
    WriteBehind& operator=(const WriteBehind&) = delete;

    // Takes the bytes for writing later, as `who`. Returns how many were taken (fewer than
    // `length` when no memory was left: the caller writes the rest itself), or the -errno of
    // an earlier writeout that failed, of which this write takes nothing.
    ssize_t write(const char* buf, size_t length, uint64_t offset,
                  std::shared_ptr<const Credentials> who);

    // Everything pending written out; waits. Errors are kept for take_error().
    void settle();
    // The error of a failed writeout not yet reported by take_error(), or 0; clears it.
    int take_error();

    // [begin, end) of the pending bytes; begin == end when there are none.
    std::pair<uint64_t, uint64_t> pending() const;

private:
    struct Chunk;
    // A chunk's memory: this file's spare, or the pool's within the window; with `lock`, waits
    // for a writeout of this file when there is one to wait for. Null when there is none.
    std::unique_ptr<PooledBuffer> buffer_locked(std::unique_lock<std::mutex>* lock);
    void submit_locked(std::unique_ptr<Chunk> chunk);
    void submit_full_locked();
    void settle_locked(std::unique_lock<std::mutex>& lock);
    void drain();

    const Sink sink_;
    BufferPool& pool_;
    IoWorkers& workers_;
    const size_t chunk_;
    const size_t max_chunks_;
    const uint32_t alignment_;

    // Guards everything below.
    mutable std::mutex mutex_;
    std::condition_variable written_;
    std::unique_ptr<Chunk> filling_;            // taking the stream's bytes
    std::deque<std::unique_ptr<Chunk>> queue_;  // handed to the workers, in file order
    bool draining_ = false;                     // a worker is writing the queue out
    std::unique_ptr<PooledBuffer> spare_;       // of a chunk written out, for the next one
    int error_ = 0;                             // of a failed writeout, until take_error()
    bool error_told_ = false;                   // ... and a write has reported it already
    uint64_t failures_ = 0;                     // failed writeouts so far
    int last_failure_ = 0;                      // the -errno of the last one
};

}  // namespace diofs

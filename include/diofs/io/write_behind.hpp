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
// Room before bytes are taken: a write's range is reserved on the backing file first (Reserve:
// fallocate with FALLOC_FL_KEEP_SIZE, as the writer), so ENOSPC and EDQUOT are returned by the
// write whose bytes cannot be stored, as ext4 and xfs do with delayed allocation, and a
// writeout never finds the disk full. A stream reserves ahead of itself (twice what it has
// reserved so far, up to a chunk), so that a writer of 4 KiB records asks once per MiB, not
// once per record; a write inside the range already reserved asks nothing
// (RoomReservation::Stream). A backing file that cannot reserve makes the write go through at
// once instead of being held (see RoomReservation::reserve).
//
// Errors that cannot be reserved against (EIO) surface at a writeout. Then the file is in
// error for good: the failed writeout and everything held after it are dropped (and logged),
// and every later write, settle's error() (fsync) and close of this open file return the
// error. So no later write can land beyond acknowledged bytes that were lost, leaving a hole
// that reads back as zeros: the program learns it at every step until it closes. What reached
// the backing file before the failure stays there.

#include "diofs/io/buffer_pool.hpp"
#include "diofs/caller_credentials.hpp"
#include "diofs/io/io_workers.hpp"
#include "diofs/io/room_reservation.hpp"

#include <time.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace diofs {

class WriteBehind {
public:
    // Writes [offset, offset + length) of `buf` to the backing file (any alignment; `buf` is a
    // pool chunk): a count, short only with an error to follow, or -errno.
    using Sink = std::function<ssize_t(const char* buf, size_t length, uint64_t offset)>;
    // What Reserve made (room_reservation.hpp): room up to `end`, or write through, or the
    // error the write returns.
    using Room = RoomReservation::Room;
    // Makes room on the backing file for [offset, offset + length), and for up to `ahead` bytes
    // after it where that is past the end of the file, before the bytes are taken; run as the
    // writer. Empty: no room needed (tests).
    using Reserve = std::function<Room(uint64_t offset, uint64_t length, uint64_t ahead)>;

    // At most `window` bytes (whole chunks, at least two: one filling while one is written)
    // pending per file; `alignment` is the direct-I/O alignment of the file. `name` says
    // which file it is in the log ("inode 8:1/1234").
    WriteBehind(Sink sink, BufferPool& pool, IoWorkers& workers, uint64_t window,
                uint32_t alignment, Reserve reserve = {}, std::string name = "a file");
    // Writes out what is pending and waits (an error nobody was told of is logged).
    ~WriteBehind();
    WriteBehind(const WriteBehind&) = delete;
    WriteBehind& operator=(const WriteBehind&) = delete;

    // Takes the bytes for writing later, as `who`. Returns how many were taken (fewer than
    // `length` when no memory was left or Reserve said to write through: the caller writes the
    // rest itself, after what was taken before), or -errno: the room could not be reserved
    // (ENOSPC, EDQUOT), or an earlier writeout failed and the file is in error; either way this
    // write takes nothing.
    ssize_t write(const char* buf, size_t length, uint64_t offset,
                  std::shared_ptr<const Credentials> who);

    // Everything pending written out; waits. A failure makes the file's error().
    void settle();
    // The room reserved so far may be gone (the file was truncated): writes reserve again.
    void forget_room();
    // Everything pending written out, then `give_back` run with no write of this file under
    // way, and the room forgotten: what it reserved may be freed.
    void give_back_room(const std::function<void()>& give_back);
    // The error of a failed writeout, or 0. It stays: the file is in error until it is closed.
    int error();

    // [begin, end) of the pending bytes; begin == end when there are none.
    std::pair<uint64_t, uint64_t> pending() const;
    // When the last write was taken (CLOCK_REALTIME_COARSE, the clock of file times), while
    // bytes are pending: the modification time the file shows before they are written out.
    timespec last_write() const;

private:
    struct Chunk;
    // A chunk's memory: this file's spare, or the pool's within the window; with `lock`, waits
    // for a writeout of this file when there is one to wait for. Null when there is none.
    std::unique_ptr<PooledBuffer> buffer_locked(std::unique_lock<std::mutex>* lock);
    void submit_locked(std::unique_ptr<Chunk> chunk);
    void submit_full_locked();
    void settle_locked(std::unique_lock<std::mutex>& lock);
    void drain();
    // One chunk to the sink, as its writer: 0 or -errno (an exception is one too).
    int write_out(const Chunk& chunk);
    void fail_locked(const Chunk& chunk, int error);

    const Sink sink_;
    const Reserve reserve_;
    BufferPool& pool_;
    IoWorkers& workers_;
    const size_t chunk_;
    const size_t max_chunks_;
    const uint32_t alignment_;
    const std::string name_;

    // Guards everything below.
    mutable std::mutex mutex_;
    std::condition_variable written_;
    std::unique_ptr<Chunk> filling_;            // taking the stream's bytes
    std::deque<std::unique_ptr<Chunk>> queue_;  // handed to the workers, in file order
    bool draining_ = false;                     // a worker is writing the queue out
    std::unique_ptr<PooledBuffer> spare_;       // of a chunk written out, for the next one
    int error_ = 0;                             // of the first failed writeout: for good
    bool error_told_ = false;                   // ... returned by a write or error() since
    timespec last_write_ = {0, 0};              // when the last write was taken
    RoomReservation::Stream room_;              // reserved for this file's writes
};

}  // namespace diofs

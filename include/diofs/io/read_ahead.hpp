#pragma once
// Read-ahead for one open dbopt file. A read that starts where the previous one ended, or
// inside the chunks already read ahead (requests that come side by side may come in either
// order), is sequential; from then on the file is read in chunks (BufferPool::chunk(), aligned to it in
// the file) with direct reads on the I/O workers, up to `window` bytes past the request, so
// the next request finds its bytes in memory. The kernel is answered from the chunk itself.
// A chunk that came back short holds the end of the file: a request that reaches past it is
// answered short from the chunk, as a read of the file would be, and not read again by the
// caller (once per chunk: see take_end_locked).
//
// What was read ahead is used only while the inode has not changed through the mount since
// (InodeIo's generation), and is dropped on a read that is not sequential, on any write to
// the inode through the mount (FileWrite, file_change.hpp), and when the file is released. A read
// that the chunks cannot answer (no memory, a write under way, an error) is left to the
// caller's direct read, which also reports the error.
//
// Writes by other programs straight into the backing directory are not seen until the chunk
// holding them is read again: at most `window` bytes ahead of the reader.

#include "diofs/io/buffer_pool.hpp"
#include "diofs/io/direct_io_engine.hpp"
#include "diofs/io/inode_io.hpp"
#include "diofs/io/io_workers.hpp"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>

namespace diofs {

class ReadAhead {
public:
    // Reads `length` (aligned) bytes at `offset` (aligned) into `buf` (aligned): a count (short
    // at end of file, or anywhere on a whole number of `alignment` bytes) or -errno.
    using Source = std::function<ssize_t(char* buf, size_t length, uint64_t offset)>;

    // The file's size now.
    using Size = std::function<uint64_t()>;

    // `alignment`: the direct-I/O alignment of the file's offsets (a divisor of the chunk); a
    // read that stops short on it is asked for the rest, as DirectIoEngine::read does.
    // `size` (may be empty): asked when a stream starts, so that no chunk past the end of the
    // file is read ahead (a small file's stream read 4 empty chunks past its end before its
    // first came back short); a file that grows starts a new stream past its old end.
    ReadAhead(Source source, InodeIo& inode, BufferPool& pool, IoWorkers& workers,
              uint64_t window, uint64_t alignment, Size size = {});
    // Drops everything and waits for the reads still running.
    ~ReadAhead();
    ReadAhead(const ReadAhead&) = delete;
    ReadAhead& operator=(const ReadAhead&) = delete;

    // The bytes of [offset, offset + length) from read-ahead, when it has them (waiting for a
    // chunk already being read), fewer when the file ends before; nothing when the caller must
    // read them itself.
    std::optional<ssize_t> read(uint64_t offset, size_t length, ReadView& view);
    void drop();

    // Chunks held (in memory or being read), for tests and counters.
    size_t chunks() const;

private:
    struct Chunk;
    void drop_locked();
    // One more chunk at `offset` (chunk-aligned), being read; nothing when memory is short.
    void start_locked(uint64_t offset, uint64_t generation);
    void issue_locked(uint64_t until);
    void fill(const std::shared_ptr<Chunk>& chunk);
    // Whether a request may be answered short at the end of the file `chunk` found: once; the
    // second time the stream is dropped and the caller reads the file.
    bool take_end_locked(Chunk& chunk);

    const Source source_;
    const Size size_;
    InodeIo& inode_;
    BufferPool& pool_;
    IoWorkers& workers_;
    const uint64_t window_;
    const uint64_t alignment_;
    const uint64_t chunk_;

    // Guards everything below.
    mutable std::mutex mutex_;
    std::condition_variable filled_;
    std::deque<std::shared_ptr<Chunk>> chunks_;  // consecutive chunks, in file order
    uint64_t next_ = 0;     // where a sequential read would start
    uint64_t end_ = UINT64_MAX;  // a chunk came back short here: nothing is read past it
    unsigned reading_ = 0;  // chunks being filled by a worker
};

}  // namespace diofs

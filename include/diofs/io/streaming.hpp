#pragma once
// What read-ahead and write coalescing share across a mount: the chunks of memory, the I/O
// workers, the window sizes, and the open files that coalesce (so that the end of a session
// can write out what they hold). One per dbopt mount that is not strict; each DirectFile that
// reads ahead or coalesces uses it (direct_file.hpp).

#include "diofs/io/buffer_pool.hpp"
#include "diofs/io/chunk.hpp"
#include "diofs/io/inode_io.hpp"
#include "diofs/io/io_workers.hpp"

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>

namespace diofs {

class Streaming {
public:
    // Chunks are kChunk bytes but in unit tests.
    Streaming(size_t memory_limit, unsigned io_threads, uint64_t read_ahead_window,
              uint64_t write_window, size_t chunk = kChunk, size_t alignment = 4096)
        : pool(chunk, alignment, memory_limit),
          workers(io_threads),
          read_ahead(read_ahead_window),
          write_behind(write_window) {}

    // An open file that coalesces, from its open to its release.
    void add(InodeIo::Participant* file);
    void remove(InodeIo::Participant* file);

    // Every open file's pending writes out, waiting for them: when the session ends while
    // files are still open (the daemon was told to stop), nothing they were given is lost.
    void settle_all();

    BufferPool pool;
    IoWorkers workers;  // after the pool: joined before the pool goes
    const uint64_t read_ahead;    // window per open file, 0: none
    const uint64_t write_behind;  // pending bytes per open file, 0: none (every write direct)

private:
    // Guards files_. Taken alone, or before a file's own locks (settle_all).
    std::mutex files_mutex_;
    std::set<InodeIo::Participant*> files_;
};

}  // namespace diofs

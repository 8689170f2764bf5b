#pragma once
// What the daemon counts as it works, for `diofs stats` and SIGUSR1 (stats.hpp). One set per
// process: a daemon serves one mount (unit tests, which build several, read differences).
//
// Each counter is a relaxed atomic on a cache line of its own: one uncontended add per event,
// no lock and no ordering on the I/O path; a reader sees every counter's latest value, not a
// snapshot of all of them at one instant.

#include <atomic>
#include <cstdint>

namespace diofs {

class Counter {
public:
    void add(uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
    void sub(uint64_t n = 1) noexcept { value_.fetch_sub(n, std::memory_order_relaxed); }
    uint64_t get() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    alignas(64) std::atomic<uint64_t> value_ = 0;
};

struct Counters {
    // Requests answered through the mount, and their bytes.
    Counter read_requests, read_bytes, write_requests, written_bytes;
    // Bytes moved between the daemon and the backing files, by way. direct: O_DIRECT
    // transfers (read-ahead and rounding to the alignment included); bounced: the odd heads and
    // tails of writes, through a page written back and dropped at once; buffered_fallback: a
    // dbopt file on a filesystem that refuses O_DIRECT (dropped behind itself); passthrough:
    // files that are not dbopt (the mount is not), through the backing's page cache.
    Counter read_direct, read_buffered_fallback, read_passthrough;
    Counter written_direct, written_bounced, written_buffered_fallback, written_passthrough;
    // Read requests of files that read ahead: answered from the chunks read ahead, or not.
    Counter read_ahead_hits, read_ahead_misses;
    // Coalesced chunks written out, and writeouts that failed.
    Counter chunks_written, writeout_errors;
    // Open files under dbopt (a gauge).
    Counter open_dbopt_files;
    // Drops of backing pages from the page cache (each a POSIX_FADV_DONTNEED over a range),
    // the drops that had to be made again because the kernel skipped a page, and pages still
    // cached after the last attempt (none, when all is well).
    Counter backing_drops, backing_drop_retries, resident_after_drop;
};

// Constant-initialized: no guard on the way to it.
inline Counters& counters() {
    static constinit Counters all;
    return all;
}

}  // namespace diofs

#pragma once
// The unit of the daemon's own direct I/O: the largest request the kernel sends in one piece
// (FUSE's max_write, 256 pages). Read-ahead reads and coalesced writes move whole chunks, the
// mount's BufferPool hands out chunks, a copy_file_range done by hand moves a chunk at a time,
// a copy into an aligned buffer is at most one, and a dbopt file reports it as st_blksize
// (coreutils sizes cp's buffer from it: larger requests, fewer of them).

#include <cstddef>

namespace diofs {

inline constexpr size_t kChunk = size_t{1} << 20;

}  // namespace diofs

#pragma once
// What the direct-I/O engine needs from one backing file. The real one (PosixBackingIo) holds
// an O_DIRECT descriptor and a buffered one; tests put an in-memory file with a synthetic
// sector size in its place. Every call returns a byte count or -errno.

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace diofs {

class BackingIo {
public:
    virtual ~BackingIo() = default;
    // offset, length and buffer address aligned. A count short of `length` means end of file.
    virtual ssize_t direct_pread(char* buf, size_t length, uint64_t offset) = 0;
    // offset, length and buffer address aligned.
    virtual ssize_t direct_pwrite(const char* buf, size_t length, uint64_t offset) = 0;
    // Any offset and length: the bounce page. When it returns, the bytes are in the backing
    // file and no page of the range is left in the page cache.
    virtual ssize_t bounce_pwrite(const char* buf, size_t length, uint64_t offset) = 0;
};

}  // namespace diofs

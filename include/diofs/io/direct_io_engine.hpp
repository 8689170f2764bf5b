#pragma once
// The dbopt read and write paths, over a BackingIo.
//
// write: the request is split (io_split.hpp); the aligned body goes to direct_pwrite, from the
// caller's buffer when its address is aligned and through an aligned copy otherwise; the
// unaligned head and tail go to bounce_pwrite. Pieces are written in file order; an error
// after some bytes were written gives a short count (as write(2) does), an error before any
// gives -errno.
// read: the aligned superset of the request is read with direct_pread into an aligned buffer;
// the requested part is handed back from it, without another copy.
//
// The caller runs one write of a file at a time (DirectFile::write_now, under InodeIo::writing):
// a bounce write rewrites whole pages of the page cache and a direct write whole sectors, so
// two writes of different bytes of one page or sector must not overlap in time.

#include "diofs/io/aligned_buffer.hpp"
#include "diofs/io/backing_io.hpp"
#include "diofs/io/dio_alignment.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace diofs {

struct ReadView {
    const char* data = nullptr;
    size_t length = 0;  // 0: end of file
    // Keeps the memory `data` points into alive until the reply is sent (a read-ahead chunk).
    std::shared_ptr<const void> pin;
};

class DirectIoEngine {
public:
    explicit DirectIoEngine(DioAlignment alignment) : alignment_(alignment) {}

    ssize_t write(BackingIo& io, const char* buf, size_t length, uint64_t offset) const;

    // On success, `view` points into `scratch`, valid until its next use.
    ssize_t read(BackingIo& io, uint64_t offset, size_t length, AlignedBuffer& scratch,
                 ReadView& view) const;

    const DioAlignment& alignment() const { return alignment_; }

private:
    ssize_t write_body(BackingIo& io, const char* buf, uint64_t length, uint64_t offset) const;

    DioAlignment alignment_;
};

}  // namespace diofs

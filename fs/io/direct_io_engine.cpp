#include "diofs/io/direct_io_engine.hpp"

#include "diofs/io/io_split.hpp"
#include "diofs/io/partial_transfers.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace diofs {

ssize_t DirectIoEngine::write_body(BackingIo& io, const char* buf, uint64_t length,
                                   uint64_t offset) const {
    if (reinterpret_cast<uintptr_t>(buf) % alignment_.memory == 0)
        return io.direct_pwrite(buf, length, offset);
    // libfuse's request buffers are not aligned: copy through an aligned one, a chunk at most
    // (a whole number of aligned blocks), which is also the largest direct request issued.
    thread_local AlignedBuffer copy;
    copy.reserve(std::max<size_t>(alignment_.memory, alignment_.offset),
                 std::min<uint64_t>(length, kChunk));
    return transfer_all(
               length, ShortCount::stops(),
               [&](uint64_t done, uint64_t n) {
                   std::memcpy(copy.data(), buf + done, n);
                   return io.direct_pwrite(copy.data(), n, offset + done);
               },
               round_down(copy.size(), alignment_.offset))
        .count_or_error();
}

ssize_t DirectIoEngine::write(BackingIo& io, const char* buf, size_t length,
                              uint64_t offset) const {
    if (length == 0)
        return 0;
    const IoSplit split = split_io(offset, length, alignment_.offset);
    uint64_t done = 0;
    for (const Extent* piece : {&split.head, &split.body, &split.tail}) {
        if (piece->empty())
            continue;
        const char* src = buf + (piece->offset - offset);
        ssize_t rv = piece == &split.body ? write_body(io, src, piece->length, piece->offset)
                                          : io.bounce_pwrite(src, piece->length, piece->offset);
        if (rv < 0)
            return done ? static_cast<ssize_t>(done) : rv;
        done += static_cast<uint64_t>(rv);
        if (static_cast<uint64_t>(rv) < piece->length)
            break;
    }
    return static_cast<ssize_t>(done);
}

ssize_t DirectIoEngine::read(BackingIo& io, uint64_t offset, size_t length, AlignedBuffer& scratch,
                             ReadView& view) const {
    view = {};
    if (length == 0)
        return 0;
    const uint64_t begin = round_down(offset, alignment_.offset);
    const uint64_t end = round_up(offset + length, alignment_.offset);
    scratch.reserve(std::max<size_t>(alignment_.memory, alignment_.offset), end - begin);
    // A short direct read that ends off alignment means end of file; one that returns nothing
    // too. Read until the whole superset is in or the file ends.
    const Transferred in = transfer_all(end - begin, ShortCount::stops_off(alignment_.offset),
                                        [&](uint64_t got, uint64_t asked) {
                                            return io.direct_pread(scratch.data() + got, asked,
                                                                   begin + got);
                                        });
    if (in.error < 0)
        return in.error;  // the error, even after some bytes
    const uint64_t got = in.done;
    const uint64_t skip = offset - begin;
    if (got <= skip)
        return 0;
    view.data = scratch.data() + skip;
    view.length = std::min<uint64_t>(got - skip, length);
    return static_cast<ssize_t>(view.length);
}

}  // namespace diofs

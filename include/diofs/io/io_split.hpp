#pragma once
// The routing decision of a direct-I/O mount: which part of a request can go straight to an
// O_DIRECT descriptor and which part needs a bounce page. A pure function of offset, length
// and alignment, so that it can be tested on a table of cases; the code that touches
// descriptors calls it and decides nothing of its own.
//
// With alignment A (a power of two), the request [offset, offset + length) is cut at the first
// multiple of A at or after `offset` and the last one at or before the end:
//
//     offset                                                    offset + length
//       |<- head ->|<------------------ body ------------------>|<- tail ->|
//             roundup(offset, A)                     rounddown(end, A)
//
// The body is a whole number of aligned blocks (empty when there is none); head and tail are
// each shorter than A. A request inside one block that starts unaligned is a head alone; one
// that starts on a boundary and ends short of the next is a tail alone.

#include <sys/types.h>

#include <cstdint>

namespace diofs {

// Rounds down and up to a multiple of `align`, which must be a power of two:
// round_down(5000, 4096) == 4096, round_up(5000, 4096) == 8192, round_up(8192, 4096) == 8192.
constexpr uint64_t round_down(uint64_t value, uint64_t align) { return value & ~(align - 1); }
constexpr uint64_t round_up(uint64_t value, uint64_t align) {
    return (value + align - 1) & ~(align - 1);
}
constexpr bool is_power_of_two(uint64_t value) { return value != 0 && (value & (value - 1)) == 0; }

struct Extent {
    uint64_t offset = 0;
    uint64_t length = 0;
    uint64_t end() const { return offset + length; }
    bool empty() const { return length == 0; }
    bool operator==(const Extent&) const = default;
};

struct IoSplit {
    Extent head;  // from `offset` to the first aligned boundary (unaligned start)
    Extent body;  // whole aligned blocks
    Extent tail;  // from the last aligned boundary to the end (unaligned end)
    bool operator==(const IoSplit&) const = default;
};

// `align` must be a power of two; the pieces are in file order and together cover exactly
// [offset, offset + length).
IoSplit split_io(uint64_t offset, uint64_t length, uint64_t align);

}  // namespace diofs

#include "diofs/io/io_split.hpp"

#include <algorithm>

namespace diofs {

IoSplit split_io(uint64_t offset, uint64_t length, uint64_t align) {
    IoSplit s;
    const uint64_t end = offset + length;
    const uint64_t first = std::min(round_up(offset, align), end);
    const uint64_t last = std::max(round_down(end, align), first);
    if (first > offset)
        s.head = {offset, first - offset};
    if (last > first)
        s.body = {first, last - first};
    if (end > last)
        s.tail = {last, end - last};
    return s;
}

}  // namespace diofs

#pragma once
// The one loop over partial transfers: a pread, pwrite, direct read or write, a writeout or a
// copy step may move fewer bytes than it was asked for, and its caller asks again for the rest,
// stops at the end of the file, or stops at an error. Each caller says what a short count means
// (ShortCount) and how it turns the result into its answer (Transferred); the single calls are
// its own (a thin wrapper, a BackingIo call, a sink), as is retrying EINTR
// (sys::restarting in syscalls.hpp).

#include <sys/types.h>

#include <algorithm>
#include <cstdint>

namespace diofs {

// What a loop over partial transfers moved, and why it stopped.
struct Transferred {
    uint64_t done = 0;  // bytes moved
    int error = 0;      // -errno of the call that stopped the loop; 0 if none failed
    // What read(2) and write(2) answer: the bytes moved, or the error when none were.
    ssize_t count_or_error() const { return done > 0 ? static_cast<ssize_t>(done) : error; }
};

// What a count short of what a call was asked for means (a count of 0 always ends the loop:
// the end of the file, or nothing more can be moved).
class ShortCount {
public:
    // Part of the transfer: the rest is asked for (pread and pwrite, which may stop anywhere;
    // a writeout's sink).
    static constexpr ShortCount again() { return ShortCount(1); }
    // The last call: a short read is the end of the file; a short write has an error to
    // follow, which the next call would return.
    static constexpr ShortCount stops() { return ShortCount(0); }
    // The last call when it leaves what was moved off a multiple of `alignment`, else part of
    // the transfer: a direct read ends off alignment only at the end of the file.
    static constexpr ShortCount stops_off(uint64_t alignment) { return ShortCount(alignment); }

    // Whether a short count after which `done` bytes are moved ends the loop.
    constexpr bool stops_at(uint64_t done) const {
        return granule_ == 0 || done % granule_ != 0;
    }

private:
    constexpr explicit ShortCount(uint64_t granule) : granule_(granule) {}
    uint64_t granule_;  // 0: every short count stops; 1: none does
};

// Moves `length` bytes by calls of `call(done, asked)`, which moves up to `asked` bytes (at
// most `per_call`) from `done` bytes into the transfer on and returns the count or -errno,
// until all are moved, a call fails (the loop stops there, whatever was moved before), a call
// moves nothing, or a short count stops it (`short_count`).
template <typename Call>
Transferred transfer_all(uint64_t length, ShortCount short_count, Call&& call,
                         uint64_t per_call = UINT64_MAX) {
    Transferred moved;
    while (moved.done < length) {
        const uint64_t asked = std::min(length - moved.done, per_call);
        const ssize_t n = call(moved.done, asked);
        if (n < 0) {
            moved.error = static_cast<int>(n);
            break;
        }
        moved.done += static_cast<uint64_t>(n);
        if (n == 0 || (static_cast<uint64_t>(n) < asked && short_count.stops_at(moved.done)))
            break;
    }
    return moved;
}

}  // namespace diofs

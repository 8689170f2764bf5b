#include "diofs/io/room_reservation.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace diofs {

RoomReservation::Stream::Ask RoomReservation::Stream::ask(uint64_t offset, uint64_t length,
                                                          uint64_t most_ahead) const {
    if (!continued_by(offset))
        return {offset, length, 0};
    return {end_, offset + length - end_, std::min(most_ahead, end_ - begin_)};
}

void RoomReservation::Stream::reserved(uint64_t offset, uint64_t length, uint64_t room_end) {
    if (!continued_by(offset))
        begin_ = offset;
    end_ = std::max(room_end, offset + length);
}

void RoomReservation::join() {
    std::lock_guard lock(mutex_);
    ++files_;
}

RoomReservation::Room RoomReservation::reserve(BackingIo& io, uint64_t offset, uint64_t length,
                                               uint64_t ahead, const Holder& holder) {
    std::lock_guard lock(mutex_);
    BackingIo::Status st;
    if (int rv = io.stat(st); rv < 0)
        return {rv, false, 0};
    if (holder.writes_through && holder.writes_through(st.mode))
        return {0, true, 0};
    const uint64_t size = st.size;
    const uint64_t end = offset + length;
    // Ahead only past the end of the file: inside it, a reservation could fill a hole the file
    // is meant to keep. Past it, what is not written is given back (give_back).
    const uint64_t want = end > size ? end + ahead : end;
    if (reservable_.load(std::memory_order_relaxed)) {
        // Noted before the fallocate: one that fails may still have allocated part of the
        // range, which the give-back frees too.
        if (want > size)
            reserved_end_ = std::max(reserved_end_, want);
        uint64_t reserved = want;
        int rv = io.reserve(offset, want - offset);
        if (rv < 0 && want > end && rv != -EOPNOTSUPP && rv != -ENOSYS) {
            // The disk may still hold the write itself, if not the room ahead of it.
            reserved = end;
            rv = io.reserve(offset, length);
        }
        if (rv == 0)
            return {0, false, reserved};
        if (rv != -EOPNOTSUPP && rv != -ENOSYS)
            return {rv, false, 0};  // the error of this write (ENOSPC, EDQUOT, EFBIG...)
        reservable_.store(false, std::memory_order_relaxed);
        static std::atomic<bool> told = false;
        if (!told.exchange(true))
            spdlog::info("{}: the backing filesystem cannot reserve space (fallocate: {}): "
                         "writes are held back only while its free space is more than what "
                         "the mount holds, and written through otherwise",
                         holder.name, std::strerror(-rv));
    }
    // Without a reservation, a full disk would be found at the writeout, after the write was
    // answered: hold bytes back only while there is clearly room for everything held.
    if (!holder.held)
        return {0, true, 0};
    const int64_t space = io.free_space();
    if (space < 0)
        return {0, true, 0};
    const uint64_t available = static_cast<uint64_t>(space);
    if (available <= holder.held() + length)
        return {0, true, 0};
    return {0, false, end};
}

void RoomReservation::give_back(BackingIo& io, bool leaving) {
    // The reservations first, then the writes and resizes (the end of file stays where it is).
    //
    // The size read below is still the size when the file is truncated to it, so the truncate
    // frees only the room past the end and undoes no resize: every change made through the
    // mount that can move the end of file holds `writing_` for its system call, as this does
    // from the stat to the truncate. Writes: DirectFile::write_now (strict writes, and the
    // writeouts of every open file of the inode). Truncates (setattr, an open with O_TRUNC),
    // fallocate and clones into the file: FileChange::resize. So each lands wholly
    // before the stat (and is seen by it) or wholly after the truncate. The kernel orders none
    // of this for us: FLUSH and RELEASE come without the inode's lock. A resize made beside the
    // mount (a program in the backing directory, another node of a cluster) is ordered by no
    // lock of this daemon; landing in the microseconds between the two calls, it would be
    // undone (docs/design.md, "Limits in detail").
    std::lock_guard lock(mutex_);
    if (leaving)
        --files_;
    // Another open file may still write into the room: the last one gives it back.
    if (files_ > (leaving ? 0u : 1u) || reserved_end_ == 0)
        return;
    const uint64_t reserved = std::exchange(reserved_end_, 0);
    std::lock_guard one_at_a_time(writing_);
    BackingIo::Status st;
    if (io.stat(st) < 0 || reserved <= st.size)
        return;
    // A truncate to the present size frees what lies past it; like any truncate it zeroes the
    // rest of the last block through the page cache (that page is dropped), and stamps the file
    // with the present time, when it was last modified by its last write.
    if (io.truncate(st.size) == 0) {
        io.drop_end_of_file_page(st.size);
        io.set_mtime(st.mtime);
    }
}

}  // namespace diofs

#pragma once
// The room reserved in one inode's backing file for bytes the daemon has accepted and not yet
// written (docs/design.md, "Read-ahead and write coalescing"): a write that is held back is
// answered before its bytes reach the backing file, so their room is reserved first
// (fallocate with FALLOC_FL_KEEP_SIZE, as the writer), and ENOSPC or EDQUOT come from the
// write that does not fit, never from a writeout after the write was answered.
//
// One per inode (InodeIo::room), shared by its open files that reserve. It knows how far room
// is reserved past the end of the file, reserves (and how much ahead), and gives what was not
// written back when the last of those files goes. A Stream is one writer's view of it: the
// range its writes reserved so far, and when the next write must reserve again, and from where.
// A reservation runs as the calling thread is (callers switch to the writer around it, so that
// quotas and reserved blocks apply as to a write).

#include "diofs/io/backing_io.hpp"

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace diofs {

class RoomReservation {
public:
    // What a reservation made: room up to `end` (at least the range's end, more when it could
    // reserve ahead); or the bytes are to be written at once, not held (the room cannot be made
    // sure of, or the file must not hold bytes back); or `error` (-ENOSPC, -EDQUOT, -EFBIG, or
    // the stat's error), which the write that asked returns, taking nothing.
    struct Room {
        int error = 0;
        bool write_through = false;
        uint64_t end = 0;
    };

    // What the file that reserves adds to the rule.
    struct Holder {
        // Names the file in the log.
        std::string name = "a file";
        // Whether a file of this mode must not hold bytes back (setuid, setgid: DirectFile);
        // asked with the mode read at every reservation. Empty: never.
        std::function<bool(mode_t)> writes_through = {};
        // Where the filesystem cannot reserve: what the mount may hold back besides the write
        // (its pool's chunks in use, and one more). Bytes are held only while the filesystem's
        // free space is more than that and the write. Empty: nothing is held then.
        std::function<uint64_t()> held = {};
    };

    // One writer's room: the range its writes reserved, [begin, end), which the next writes
    // use without asking. A stream that goes on past it reserves ahead of itself, as much again
    // as it has reserved so far, up to a limit (a chunk): a writer of 4 KiB records asks once
    // per MiB, not once per record. Not thread-safe: its owner's lock guards it (WriteBehind).
    class Stream {
    public:
        // The reservation a write of [offset, offset + length) asks for.
        struct Ask {
            uint64_t offset = 0;
            uint64_t length = 0;
            uint64_t ahead = 0;
        };

        // Whether [offset, offset + length) is in the room already reserved (nothing to ask).
        bool covers(uint64_t offset, uint64_t length) const {
            return offset >= begin_ && offset + length <= end_;
        }
        // What to reserve for the write: a write that continues the room reserves from its end,
        // and ahead of itself as much again as the room holds, up to `most_ahead`; any other
        // reserves its own range and nothing ahead.
        Ask ask(uint64_t offset, uint64_t length, uint64_t most_ahead) const;
        // The reservation asked for that write made room up to `room_end`.
        void reserved(uint64_t offset, uint64_t length, uint64_t room_end);
        // The room may be gone (the file was truncated, or the room given back): ask again.
        void forget() { begin_ = end_ = 0; }

    private:
        bool continued_by(uint64_t offset) const {
            return end_ > begin_ && offset >= begin_ && offset <= end_;
        }

        uint64_t begin_ = 0, end_ = 0;
    };

    // `writing` is the inode's lock of writes and resizes (InodeIo::writing), held for the
    // give-back's stat and truncate.
    explicit RoomReservation(std::mutex& writing) : writing_(writing) {}
    // Whether the backing file can reserve room (fallocate): false once it refused.
    bool reservable() const { return reservable_.load(std::memory_order_relaxed); }
    RoomReservation(const RoomReservation&) = delete;
    RoomReservation& operator=(const RoomReservation&) = delete;

    // A file that reserves opens: the room is given back only when the last one is done.
    void join();

    // Room in the file behind `io` for [offset, offset + length), and for `ahead` bytes after
    // it where that is past the end of the file (inside it, a reservation could fill a hole the
    // file is meant to keep; past it, what is not written is given back). When the disk holds
    // the range but not the room ahead, the range alone. The error of a failed reservation is
    // the fallocate's for the range itself (ENOSPC, EDQUOT, EFBIG...), or the stat's; nothing is
    // accepted then. A filesystem without fallocate (EOPNOTSUPP, ENOSYS) is noted once: from
    // then on bytes are held only while its free space is clearly enough (Holder::held), and
    // written through otherwise.
    // A second kind of user, reserving ahead of a window of N bytes from offset X, asks
    // reserve(io, X, N, ahead, {}) and gets the same answers.
    Room reserve(BackingIo& io, uint64_t offset, uint64_t length, uint64_t ahead,
                 const Holder& holder);

    // At a close of a file that joined (`leaving` false: the file stays open until its
    // release) or its release (`leaving` true: it is gone): when no other file that joined may
    // still write into the room, what was reserved past the end of the file and not written is
    // freed by a truncate to the present size, and the modification time, which the truncate
    // stamps, is put back. The caller makes sure no write of its own is under way or held.
    void give_back(BackingIo& io, bool leaving);

private:
    // Guards reserved_end_ and files_. Taken by a reservation (under the writer's WriteBehind
    // lock) and by a give-back, before `writing_`; never while InodeIo::mutex_ is held.
    std::mutex mutex_;
    uint64_t reserved_end_ = 0;  // the furthest byte reserved past the end of the file
    unsigned files_ = 0;         // open files that joined and have not left
    // fallocate works on the backing file; false once it said EOPNOTSUPP or ENOSYS.
    std::atomic<bool> reservable_ = true;
    std::mutex& writing_;
};

}  // namespace diofs

#pragma once
// The dbopt state of one inode that every open file of it shares: the lock that makes its
// writes to the backing file one at a time, a count of the changes made to it through the
// mount (which tells read-ahead whether what it read is still the file), and the open files
// themselves, so that a request through one descriptor can make the others write out what
// they hold back.
//
// The rules it carries out (docs/design.md, "Read-ahead and write coalescing"):
// - before a read of the inode, through any descriptor, every pending write of it is written;
// - before a write, the pending writes of other descriptors that overlap it are written (the
//   later write lands last), and their read-ahead is dropped;
// - before any other change (truncate, fallocate, a copy into it, setattr), all of them.
// Handlers do not call these one by one: a change goes through FileChange or FileWrite, the
// one seam that orders every step of it (file_change.hpp).

#include "diofs/io/room_reservation.hpp"

#include <sys/stat.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

namespace diofs {

class InodeIo {
public:
    // Writes taken and not yet on the backing file.
    struct Pending {
        uint64_t end = 0;            // the end of the furthest, 0 without any
        timespec last_write = {0, 0};  // when the last of them was taken
    };

    // What an open file of the inode holds back.
    class Participant {
    public:
        virtual ~Participant() = default;
        // Writes out its pending writes and waits for them. Errors stay with the file.
        virtual void settle() = 0;
        // settle(), when a pending write overlaps [begin, end).
        virtual void settle_overlapping(uint64_t begin, uint64_t end) = 0;
        virtual void drop_read_ahead() = 0;
        // Its pending writes.
        virtual Pending pending() const = 0;
        // The file was changed by another request (truncate, fallocate, chmod, a copy into
        // it): what the open file learned of it (room reserved, the mode) may be wrong now.
        virtual void changed() {}
    };

    // One change of the file through the mount, from before its first byte moves until after
    // its last (a write going out, and every FileChange); see quiet_generation().
    class Change {
    public:
        explicit Change(InodeIo& io) : io_(&io) { io.started_.fetch_add(1); }
        ~Change() { io_->finished_.fetch_add(1); }
        Change(const Change&) = delete;
        Change& operator=(const Change&) = delete;

    private:
        InodeIo* io_;
    };
    [[nodiscard]] Change change() { return Change(*this); }

    // A number for the file's present contents, when no change is under way; data read from
    // the backing file from now on is current while unchanged_since() says so.
    std::optional<uint64_t> quiet_generation() const {
        const uint64_t started = started_.load();
        if (finished_.load() != started)
            return std::nullopt;
        return started;
    }
    bool unchanged_since(uint64_t generation) const { return started_.load() == generation; }

    void attach(Participant* file);
    void detach(Participant* file);

    // Every pending write of the inode, from every open file, on the backing file.
    void settle();
    // Before `writer` writes [begin, end): the others' overlapping pending writes are written
    // out and their read-ahead dropped.
    void before_write(const Participant* writer, uint64_t begin, uint64_t end);
    // Before a change other than a write (truncate, fallocate, chmod, a copy into the file):
    // every pending write out, every read-ahead dropped, every file told (changed()).
    void before_change();
    // The pending writes of every open file: the size stat reports is at least their end, and
    // the modification time at least the time of the last (the time of the write, as on a
    // filesystem that writes back later).
    Pending pending() const;
    // The backing file's attributes as the mount shows them: those `stat_backing` reads, with
    // the size and times of the pending writes in them. The pending writes are noted before
    // the backing file is stat'ed: a writeout that finishes in between is then in one or the
    // other. Noted after, its bytes could be in neither, and the size reported shorter than
    // writes already acknowledged (a GETATTR answered so is believed by the kernel).
    int stat_with_pending(const std::function<int(struct stat&)>& stat_backing,
                          struct stat& st) const;
    // Whether an open file was ever attached: before that, no write of the inode was taken
    // through the mount, and a stat of the backing file made earlier is still what to show.
    bool had_open_files() const { return had_open_files_.load(std::memory_order_acquire); }

    // The one owner of how writes of this inode are serialized: one write to the backing file
    // at a time, through any open file, strict writes and writeouts on I/O threads alike
    // (DirectFile::write_now), from the size it reads before it to the drop of the end-of-file
    // page after it. Otherwise two writes of one page or sector could overlap (a bounce write
    // rewrites whole pages, a direct write whole sectors: see direct_io_engine.hpp), and two
    // open files writing out at once could move the end of file between the two, leaving the
    // page the filesystem zeroed there cached. The kernel serializes the writes of one FUSE
    // inode anyway (FUSE direct writes hold the inode lock); this covers the writeouts.
    // The other changes that may move the end of file take it too, around their system call
    // only (FileChange::resize), so that RoomReservation::give_back, which reads the size and
    // truncates the file to it under this lock, never undoes a resize made through the mount.
    // Taken after the room's lock (give_back), and never while a file's WriteBehind lock is
    // waited for: its holder may be waiting for this one.
    std::mutex writing;

    // The room reserved in the backing file for the writes its open files hold back, and given
    // back when the last of them that reserves goes (room_reservation.hpp). Its lock is taken
    // before `writing`.
    RoomReservation room{writing};

private:
    std::atomic<bool> had_open_files_ = false;
    std::atomic<uint64_t> started_ = 0;
    std::atomic<uint64_t> finished_ = 0;
    // Guards files_. Held while the files are asked to settle (a file is not destroyed while
    // it is asked); a file never takes it while holding its own locks.
    mutable std::mutex mutex_;
    std::vector<Participant*> files_;
};

}  // namespace diofs

#pragma once
// The dbopt side of one open regular file: the engine, and, unless the mount is strict or the
// caller asked for synchronous or direct I/O, read-ahead and write coalescing, over the backing
// I/O it is given. Filesystem::open_direct makes the backing I/O (posix_backing_io.hpp) and the
// DirectFile; every read, write, fsync and flush of a dbopt file goes through it, and it
// touches the backing file only through its BackingIo (the unit tests give it one in memory).
// It is a participant of its inode's InodeIo, so requests through other descriptors of the
// same file see its pending writes (see inode_io.hpp); its writes and clones go through the
// seam of the file's coherence (FileWrite, FileChange: file_change.hpp).

#include "diofs/io/backing_io.hpp"
#include "diofs/io/direct_io_engine.hpp"
#include "diofs/io/file_change.hpp"
#include "diofs/io/inode_io.hpp"
#include "diofs/io/read_ahead.hpp"
#include "diofs/io/write_behind.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace diofs {

class Streaming;

class DirectFile : public InodeIo::Participant {
public:
    // What the open asked for that concerns dbopt.
    struct Access {
        bool reads = true;
        bool writes = true;
        bool synchronous = false;  // O_SYNC, O_DSYNC or O_DIRECT: no coalescing, no read-ahead
    };

    // Called after a write cleared the file's setuid/setgid bits (the kernel must forget the
    // mode it has cached: see write()).
    using ModeChanged = std::function<void()>;

    // Over `io`, whose direct transfers take `alignment` (1 for the buffered fallback).
    // `streaming` null: every request is one direct transfer (strict). `name` names the file
    // in the log.
    DirectFile(std::unique_ptr<BackingIo> io, DioAlignment alignment, InodeIo& inode,
               Streaming* streaming, Access access, std::string name = "a file",
               ModeChanged mode_changed = {});
    ~DirectFile() override;
    DirectFile(const DirectFile&) = delete;
    DirectFile& operator=(const DirectFile&) = delete;

    // As `who` (null: as the calling thread is). With coalescing the bytes may be taken for
    // later, once their room is reserved on the backing file (ENOSPC and EDQUOT come from the
    // write that does not fit); the error of a failed coalesced write of this file is
    // returned instead, for good.
    // A file with setuid (or group-executable setgid) bits is written through at once, after
    // what this file holds, so that the backing filesystem clears the bits for this writer
    // as it would (or keeps them for one with CAP_FSETID) before the write is answered; then
    // `mode_changed` tells the kernel.
    // Hold::never: written before the call returns (a write back of the kernel's window: it
    // comes through whichever open file the kernel picks, so only its reply can carry its
    // outcome, and a close or fsync through another open file must find it on the device).
    enum class Hold { may, never };
    ssize_t write(const char* buf, size_t length, uint64_t offset,
                  std::shared_ptr<const Credentials> who = nullptr, Hold hold = Hold::may);
    // On success `view` points into read-ahead memory or this thread's read buffer, valid
    // while `view` lives and until this thread's next read.
    ssize_t read(uint64_t offset, size_t length, ReadView& view);
    // How the log names the file ("inode DEV/INO").
    const std::string& name() const { return name_; }
    // The dbopt part of fsync (the caller also syncs the buffered descriptor): every pending
    // write of the inode out, the backing I/O's sync, then 0 or -errno (the error of this
    // file's coalesced writes first: it stays until the file is closed).
    int sync(bool datasync);
    // The dbopt part of flush (close): this file's pending writes out, then 0 or -errno (a
    // failed coalesced write, the rest of the fallback's dirty pages). The close-time reports
    // of the descriptors are the caller's (CloseReport).
    int flush();
    // Room for [from, from + length) past the end of the file, as the calling thread is: what
    // the writeback window lets the kernel take in before it sends it (Filesystem::
    // reserve_window). 0, or the reservation's error (-ENOSPC, -EDQUOT...), or -EOPNOTSUPP
    // when nothing can be held (a backing filesystem without fallocate, a setuid file: writes
    // go through). Only a coalescing file reserves (its last close gives back what was not
    // written).
    int reserve_ahead(uint64_t from, uint64_t length);

    // copy_file_range inside a dbopt mount: shares extents where the filesystem can
    // (FICLONERANGE), else copies in large aligned direct chunks. Never the backing
    // filesystem's own copy_file_range, which on ext4 goes through the page cache.
    // Writes as `who` (null: as the calling thread is).
    static ssize_t copy(DirectFile& in, uint64_t off_in, DirectFile& out, uint64_t off_out,
                        size_t length, std::shared_ptr<const Credentials> who = nullptr);

    bool is_direct() const { return io_->is_direct(); }
    // The O_DIRECT descriptor (for CloseReport), -1 for the fallback.
    int direct_fd() const { return io_->direct_fd(); }
    const DioAlignment& alignment() const { return engine_.alignment(); }

    // InodeIo::Participant
    void settle() override;
    void settle_overlapping(uint64_t begin, uint64_t end) override;
    void drop_read_ahead() override;
    InodeIo::Pending pending() const override;
    void changed() override;

private:
    enum class Setid { unknown, none, some };

    uint64_t backing_size() const;
    // Whether the file has bits that a write by a user without CAP_FSETID clears.
    bool has_setid_bits();
    // Remembers whether `mode` has them (setid_), and says so.
    bool note_mode(mode_t mode);
    // WriteBehind's Reserve (as the writer): the inode's RoomReservation, told that a file
    // with setuid or setgid bits is written through (and noting the mode), and what the mount
    // holds back (for a filesystem that cannot reserve).
    WriteBehind::Room reserve(uint64_t offset, uint64_t length, uint64_t ahead);
    // At a close (flush) and at release: when this is the last open file of the inode that
    // reserves (`releasing`: it is going), the room reserved past the end of the file and not
    // written is freed.
    void give_back_room(bool releasing);
    // One write straight to the backing file (no coalescing), as the calling thread is.
    ssize_t write_now(const char* buf, size_t length, uint64_t offset);

    const std::string name_;
    const KernelFile kernel_;  // its forget_attributes is `mode_changed`
    // What this open file knows of the mode's setuid/setgid bits: learned at every reservation
    // and write-through check, forgotten at every change through the mount.
    std::atomic<Setid> setid_ = Setid::unknown;
    // Outlives the read-ahead and coalescing that read and write through it.
    const std::unique_ptr<BackingIo> io_;
    DirectIoEngine engine_;
    InodeIo& inode_;
    Streaming* streaming_ = nullptr;  // set while this file coalesces
    std::unique_ptr<ReadAhead> read_ahead_;
    std::unique_ptr<WriteBehind> write_behind_;
};

}  // namespace diofs

#include "diofs/io/direct_file.hpp"

#include "diofs/counters.hpp"
#include "diofs/io/io_split.hpp"
#include "diofs/io/partial_transfers.hpp"
#include "diofs/io/streaming.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <optional>

namespace diofs {
namespace {

// The most one copy_file_range request copies by hand: callers loop on short counts, and a
// worker thread should not be gone for long.
constexpr uint64_t kCopyPerRequest = 64u << 20;

AlignedBuffer& thread_read_buffer() {
    thread_local AlignedBuffer buffer;
    return buffer;
}

}  // namespace

DirectFile::DirectFile(std::unique_ptr<BackingIo> io, DioAlignment alignment, InodeIo& inode,
                       Streaming* streaming, Access access, std::string name,
                       ModeChanged mode_changed)
    : name_(std::move(name)),
      kernel_{std::move(mode_changed)},
      io_(std::move(io)),
      engine_(alignment),
      inode_(inode) {
    // A chunk must be a whole number of aligned blocks (dio_align goes up to the chunk size).
    if (streaming && !access.synchronous && streaming->pool.chunk() % alignment.offset == 0) {
        if (access.reads && streaming->read_ahead > 0)
            read_ahead_ = std::make_unique<ReadAhead>(
                [this](char* buf, size_t length, uint64_t offset) {
                    return io_->direct_pread(buf, length, offset);
                },
                inode_, streaming->pool, streaming->workers, streaming->read_ahead,
                alignment.offset, [this] { return backing_size(); });
        if (access.writes && streaming->write_behind > 0)
            write_behind_ = std::make_unique<WriteBehind>(
                [this](const char* buf, size_t length, uint64_t offset) {
                    return write_now(buf, length, offset);
                },
                streaming->pool, streaming->workers, streaming->write_behind, alignment.offset,
                [this](uint64_t offset, uint64_t length, uint64_t ahead) {
                    return reserve(offset, length, ahead);
                },
                name_);
    }
    if (write_behind_) {
        inode_.room.join();
        streaming_ = streaming;
        streaming_->add(this);
    }
    inode_.attach(this);
    counters().open_dbopt_files.add();
}

DirectFile::~DirectFile() {
    // Pending writes out while other descriptors can still see them, the room reserved past
    // them given back, then gone from the inode before the members that answer its questions
    // go.
    settle();
    if (write_behind_)
        give_back_room(true);
    inode_.detach(this);
    if (streaming_)
        streaming_->remove(this);
    write_behind_.reset();
    read_ahead_.reset();
    counters().open_dbopt_files.sub();
}

uint64_t DirectFile::backing_size() const {
    BackingIo::Status st;
    return io_->stat(st) == 0 ? st.size : 0;
}

ssize_t DirectFile::write_now(const char* buf, size_t length, uint64_t offset) {
    std::lock_guard one_at_a_time(inode_.writing);
    auto change = inode_.change();
    // A write that starts past an unaligned end of file makes the filesystem zero the rest of
    // the old last block through the page cache (xfs): that page is dropped after the write.
    const uint64_t old_size = is_direct() ? backing_size() : 0;
    ssize_t n = engine_.write(*io_, buf, length, offset);
    if (n > 0 && offset > old_size)
        io_->drop_end_of_file_page(old_size);
    return n;
}

bool DirectFile::has_setid_bits() {
    // A coalescing file knows the mode from its last reservation or check (at least every MiB
    // of a stream, and after every change through the mount): a stat per write would cost
    // as much as a third of a small write.
    if (write_behind_ && setid_.load(std::memory_order_relaxed) == Setid::none)
        return false;
    BackingIo::Status st;
    if (io_->stat(st) != 0)
        return false;
    return note_mode(st.mode);
}

bool DirectFile::note_mode(mode_t mode) {
    // The bits that a write by someone without CAP_FSETID clears (the kernel's
    // should_remove_suid): setuid always, setgid when the group may execute (without that,
    // setgid marks mandatory locking and stays).
    const bool setid = (mode & S_ISUID) || (mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP);
    setid_.store(setid ? Setid::some : Setid::none, std::memory_order_relaxed);
    return setid;
}

WriteBehind::Room DirectFile::reserve(uint64_t offset, uint64_t length, uint64_t ahead) {
    const RoomReservation::Holder holder{
        name_,
        // Held back, a write would leave setuid and setgid bits on the file until its writeout.
        [this](mode_t mode) { return note_mode(mode); },
        [this] { return streaming_->pool.counters().in_use + streaming_->pool.chunk(); }};
    return inode_.room.reserve(*io_, offset, length, ahead, holder);
}

int DirectFile::reserve_ahead(uint64_t from, uint64_t length) {
    if (!write_behind_)
        return 0;
    const WriteBehind::Room room = reserve(from, length, 0);
    // Nothing reserved and no error: the file writes through (a backing filesystem without
    // fallocate, a setuid file).
    return room.error == 0 && (room.write_through || !inode_.room.reservable()) ? -EOPNOTSUPP
                                                                                : room.error;
}

void DirectFile::give_back_room(bool releasing) {
    // Under the file's own lock (no write of it can take bytes into room that is going), then
    // the inode's reservations, then its writes and resizes (RoomReservation::give_back says
    // why no resize through the mount is undone).
    write_behind_->give_back_room([&] { inode_.room.give_back(*io_, releasing); });
}

ssize_t DirectFile::write(const char* buf, size_t length, uint64_t offset,
                          std::shared_ptr<const Credentials> who, Hold hold) {
    FileWrite announced(inode_, *this, offset, offset + length, kernel_);
    // Setuid and setgid are cleared by the write itself, as this writer, before it is
    // answered: held back, the bits would stay on the file (and in the kernel's cache, and on
    // a program run meanwhile) until the writeout. Such a write goes through at once, after
    // what this file holds; then the kernel is told (at the end of `announced`).
    bool setid = has_setid_bits();
    size_t taken = 0;
    if (write_behind_ && !setid && hold == Hold::may) {
        ssize_t n = write_behind_->write(buf, length, offset, who);
        if (n < 0 || static_cast<size_t>(n) == length)
            return n;
        taken = static_cast<size_t>(n);  // memory or room is short: the rest now
        setid = setid_.load(std::memory_order_relaxed) == Setid::some;  // found by reserve()
    } else {
        settle();  // what this file holds first
    }
    ssize_t n;
    {
        std::optional<AsCredentials> as_writer;
        if (who)
            as_writer.emplace(*who);
        n = write_now(buf + taken, length - taken, offset + taken);
    }
    if (setid) {
        setid_.store(Setid::unknown, std::memory_order_relaxed);
        announced.cleared_setid();
    }
    if (n < 0)
        return taken ? static_cast<ssize_t>(taken) : n;
    return static_cast<ssize_t>(taken) + n;
}

ssize_t DirectFile::read(uint64_t offset, size_t length, ReadView& view) {
    inode_.settle();
    if (read_ahead_) {
        if (std::optional<ssize_t> n = read_ahead_->read(offset, length, view)) {
            counters().read_ahead_hits.add();
            return *n;
        }
        counters().read_ahead_misses.add();
    }
    return engine_.read(*io_, offset, length, thread_read_buffer(), view);
}

int DirectFile::sync(bool datasync) {
    inode_.settle();
    const int failed = write_behind_ ? write_behind_->error() : 0;
    const int rv = io_->sync(datasync);
    return failed < 0 ? failed : rv;
}

int DirectFile::flush() {
    settle();
    // A close: what was reserved past the end of the file and not written is given back now,
    // not at release, which the kernel sends after close() has returned.
    if (write_behind_)
        give_back_room(false);
    const int failed = write_behind_ ? write_behind_->error() : 0;
    const int rv = io_->flush();
    return failed < 0 ? failed : rv;
}

void DirectFile::settle() {
    if (write_behind_)
        write_behind_->settle();
}

void DirectFile::settle_overlapping(uint64_t begin, uint64_t end) {
    if (!write_behind_)
        return;
    auto [first, last] = write_behind_->pending();
    if (first < end && begin < last)
        write_behind_->settle();
}

void DirectFile::changed() {
    setid_.store(Setid::unknown, std::memory_order_relaxed);
    if (write_behind_)
        write_behind_->forget_room();
}

void DirectFile::drop_read_ahead() {
    if (read_ahead_)
        read_ahead_->drop();
}

InodeIo::Pending DirectFile::pending() const {
    if (!write_behind_)
        return {};
    return {write_behind_->pending().second, write_behind_->last_write()};
}

ssize_t DirectFile::copy(DirectFile& in, uint64_t off_in, DirectFile& out, uint64_t off_out,
                         size_t length, std::shared_ptr<const Credentials> who) {
    in.inode_.settle();
    BackingIo::Status st;
    if (int rv = in.io_->stat(st); rv < 0)
        return rv;
    const uint64_t size = st.size;
    if (off_in >= size || length == 0)
        return 0;
    uint64_t want = std::min<uint64_t>(length, size - off_in);

    // Shared extents: nothing to copy at all (xfs, btrfs). The filesystem checks alignment and
    // says EINVAL or EOPNOTSUPP when it cannot; then the bytes are copied.
    {
        FileChange change(out.inode_, BackingPages(*out.io_), out.kernel_);
        const bool setid = out.has_setid_bits();
        const auto clone = [&] {
            std::optional<AsCredentials> as_writer;
            if (who)
                as_writer.emplace(*who);
            return out.io_->clone_from(*in.io_, off_in, want, off_out);
        };
        if (change.resize(clone) == 0) {
            // The clone cleared setuid and setgid as a write does (for this writer).
            if (setid)
                change.cleared_setid();
            return static_cast<ssize_t>(want);
        }
    }

    // Byte by byte: the source read ahead, the target coalesced, as a cp with read() and
    // write() would be, a chunk of the mount's pool at a time (kChunk; smaller in unit tests),
    // so that the reads ahead and the writeouts of whole chunks overlap. A short step is the
    // last: a short read is the end of the source (`want` is within the size read above, so
    // the next read would return nothing), a short write has an error to follow.
    want = std::min(want, kCopyPerRequest);
    const uint64_t step = out.streaming_ ? out.streaming_->pool.chunk() : kChunk;
    return transfer_all(
               want, ShortCount::stops(),
               [&](uint64_t done, uint64_t asked) {
                   ReadView view;
                   const ssize_t n = in.read(off_in + done, asked, view);
                   if (n <= 0)
                       return n;
                   return out.write(view.data, view.length, off_out + done, who);
               },
               step)
        .count_or_error();
}

}  // namespace diofs

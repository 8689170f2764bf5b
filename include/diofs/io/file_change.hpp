#pragma once
// The one seam of a file's coherence under dbopt. A file has caches besides the backing file:
// what its open files hold back (write coalescing) and read ahead, the pages the backing
// filesystem leaves in its own page cache when a size changes, and what the kernel caches of
// the FUSE file (its attributes; the pages of a reader's window, kernel_pages.hpp). A handler
// that is about to change the file says so here, and nowhere else, and gets every step in
// its order:
//
// - FileChange, for every change other than a write of the data path (a truncate by setattr
//   or by an open with O_TRUNC, fallocate, a clone into the file, a chmod, chown or utimes),
//   alive from before the change until after it:
//   1. made: what every open file of the inode holds back written out, their read-ahead
//      dropped, each told that what it learned of the file may be wrong now
//      (InodeIo::before_change), then the change counted as started (InodeIo::Change), so
//      that nothing read ahead from now on is taken for the new contents;
//   2. resize() and resize_range(): the system call, under InodeIo::writing (it lands wholly
//      before or after any write to the backing file and any give-back of reserved room), and
//      after it the pages it left in the backing file's page cache dropped (the old and the
//      new end of file, and for fallocate the range it zeroed or punched), the old size read
//      for that just before the call;
//   3. gone: the kernel told to forget the attributes when the change cleared setuid or
//      setgid bits it did not learn of from its reply (cleared_setid()), then the change
//      counted as finished.
// - FileWrite, around a write of the data path (DirectFile::write): made, the other open
//   files' pending writes that overlap it are written out (the later write lands last) and
//   the read-ahead of every open file, the writer's too, is dropped; gone, the kernel told
//   to forget the attributes when the write cleared setuid or setgid bits.
// - A request that only looks at the backing file (a read, fsync, lseek, the source of a
//   copy) writes out what every open file holds back first: InodeIo::settle().
//
// What the kernel caches needs no step of its own for a change it asked for: it drops the
// pages of a truncate, fallocate or copy_file_range itself, and a setattr's reply carries
// the new attributes. When the kernel holds dirty pages of a file (a writeback cache), their
// write-back belongs first in FileChange's constructor (they are writes that came before the
// change) and in FileWrite's, and their drop after the change in the destructors: KernelFile
// is where the kernel is reached.

#include "diofs/io/inode_io.hpp"
#include "diofs/unique_fd.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>

namespace diofs {

class BackingIo;

// What the kernel caches of one file, as the daemon reaches it (Filesystem::kernel_file).
// Empty: nothing to tell (unit tests).
struct KernelFile {
    // The kernel forgets the attributes it holds of the file and asks again before it uses
    // them (a mode check, an exec, a read past the size it had). Safe while a request of the
    // file is being served.
    std::function<void()> forget_attributes;
};

// The backing file's own page cache, where a change of its size leaves pages: the filesystem
// zeroes the rest of the last block through it at the old and the new end of file, and
// fallocate's zeroing and punching go through it at partial blocks (posix_backing_io.hpp).
// None where the mount is not dbopt or the file not regular: its pages are then the backing
// filesystem's business.
class BackingPages {
public:
    BackingPages() = default;
    // Through an open dbopt file's backing I/O (a clone into it). A clone leaves no page
    // inside the range it shares (the filesystem writes back and drops it first), so only the
    // ends of file are dropped.
    explicit BackingPages(BackingIo& io) : io_(&io) {}
    // Through `fd`, a descriptor of the file that outlives this.
    BackingPages(int fd, size_t page_size) : fd_(fd), page_size_(page_size) {}
    // Through `fd`, a descriptor of the file opened for the purpose (a truncate without an open
    // file), closed with this.
    BackingPages(UniqueFd fd, size_t page_size)
        : fd_(fd.get()), owned_(std::move(fd)), page_size_(page_size) {}

    explicit operator bool() const { return io_ || fd_ >= 0; }

    // The file's size: 0, or -errno (then nothing is dropped after the change).
    int size(uint64_t& out);
    // After a size change from `old_size`: the old and the new end-of-file pages, written
    // back and dropped; and [offset, offset + length) too, when `length` is not 0.
    void drop(uint64_t old_size, uint64_t offset, uint64_t length);

private:
    BackingIo* io_ = nullptr;
    int fd_ = -1;
    UniqueFd owned_;
    size_t page_size_ = 0;
};

class FileChange {
public:
    // Step 1 above. `pages`: where the backing file's page cache is reached; `kernel`: the
    // kernel's side of the file.
    FileChange(InodeIo& io, BackingPages pages = {}, KernelFile kernel = {});
    // Step 3.
    ~FileChange();
    FileChange(const FileChange&) = delete;
    FileChange& operator=(const FileChange&) = delete;

    // Runs `call`, the system call that may move the end of file (ftruncate, truncate, an open
    // with O_TRUNC, a clone into the file), and drops what it left in the backing file's page
    // cache. Returns what `call` returns (0, a descriptor, or -errno), or the -errno of the
    // size read before it. `call` makes system calls only: it takes no lock.
    template <typename Call>
    int resize(Call&& call) {
        return resize_range(0, 0, std::forward<Call>(call));
    }
    // The same for a call that also goes through the page cache at the partial blocks of
    // [offset, offset + length) (fallocate's zeroing and punching): those pages are dropped too.
    template <typename Call>
    int resize_range(uint64_t offset, uint64_t length, Call&& call) {
        uint64_t old_size = 0;
        if (pages_) {
            if (int rv = pages_.size(old_size); rv < 0)
                return rv;
        }
        int rv;
        {
            std::lock_guard one_at_a_time(io_.writing);
            rv = call();
        }
        if (rv >= 0 && pages_)
            pages_.drop(old_size, offset, length);
        return rv;
    }

    // The change cleared setuid or setgid bits, which the kernel's reply does not tell it (a
    // clone into the file): it forgets the file's attributes at the end of the change.
    void cleared_setid() { cleared_setid_ = true; }

private:
    InodeIo& io_;
    BackingPages pages_;
    const KernelFile kernel_;
    bool cleared_setid_ = false;
    InodeIo::Change change_;  // last: counted once the open files are settled
};

// A write of [begin, end) through `writer`, an open file of the inode, on its data path.
class FileWrite {
public:
    FileWrite(InodeIo& io, InodeIo::Participant& writer, uint64_t begin, uint64_t end,
              KernelFile kernel);
    ~FileWrite();
    FileWrite(const FileWrite&) = delete;
    FileWrite& operator=(const FileWrite&) = delete;

    // The write cleared setuid or setgid bits: the kernel, which caches the mode and does not
    // learn this from the write's reply, forgets the file's attributes at the end of the write.
    void cleared_setid() { cleared_setid_ = true; }

private:
    const KernelFile kernel_;
    bool cleared_setid_ = false;
};

}  // namespace diofs

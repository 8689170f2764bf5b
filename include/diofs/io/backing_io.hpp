#pragma once
// Everything the dbopt side of an open file (the engine and DirectFile) does to one backing
// file. The real ones (posix_backing_io.hpp) hold the file's descriptors; tests put an
// in-memory file with a synthetic sector size in their place, so that DirectFile's policy
// (coalescing, reservations, errors, setuid, copies) is tested without a file system. Every
// call returns a byte count, 0 or -errno; none throws.

#include <sys/types.h>
#include <time.h>

#include <cstddef>
#include <cstdint>

namespace diofs {

class BackingIo {
public:
    // What DirectFile reads of the file's status (fstat).
    struct Status {
        uint64_t size = 0;
        mode_t mode = 0;
        timespec mtime = {0, 0};
    };

    virtual ~BackingIo() = default;

    // --- the engine's transfers ------------------------------------------------------------

    // offset, length and buffer address aligned. A count short of `length` means end of file.
    virtual ssize_t direct_pread(char* buf, size_t length, uint64_t offset) = 0;
    // offset, length and buffer address aligned.
    virtual ssize_t direct_pwrite(const char* buf, size_t length, uint64_t offset) = 0;
    // Any offset and length: the bounce page. When it returns, the bytes are in the backing
    // file and no page of the range is left in the page cache.
    virtual ssize_t bounce_pwrite(const char* buf, size_t length, uint64_t offset) = 0;

    // Whether the body goes with O_DIRECT (false: the buffered fallback, every byte through the
    // page cache; the filesystem then zeroes no end-of-file page behind a write's back).
    virtual bool is_direct() const = 0;
    // The O_DIRECT descriptor, for the close-time report (CloseReport); -1 where there is none.
    virtual int direct_fd() const { return -1; }

    // --- the rest of what DirectFile does to the file ----------------------------------------

    virtual int stat(Status& out) = 0;
    // Room for [offset, offset + length) without changing the size (fallocate with
    // FALLOC_FL_KEEP_SIZE): 0, -ENOSPC, -EDQUOT..., -EOPNOTSUPP or -ENOSYS where the filesystem
    // cannot reserve.
    virtual int reserve(uint64_t offset, uint64_t length) = 0;
    // Bytes free for an unprivileged writer (fstatvfs: f_bavail * f_frsize), or -errno.
    virtual int64_t free_space() = 0;
    virtual int truncate(uint64_t size) = 0;
    // Sets the modification time, leaves the access time.
    virtual int set_mtime(const timespec& mtime) = 0;
    // Shares [source_offset, source_offset + length) of `source`'s file as
    // [offset, offset + length) of this one (FICLONERANGE): 0, or -EOPNOTSUPP, -EINVAL,
    // -EXDEV... where the filesystems cannot, and the bytes are to be copied.
    virtual int clone_from(BackingIo& source, uint64_t source_offset, uint64_t length,
                           uint64_t offset) = 0;
    // This side's part of fsync (the caller syncs the buffered descriptor): 0 or -errno.
    virtual int sync(bool datasync) = 0;
    // This side's part of flush (a close): 0 or -errno.
    virtual int flush() = 0;

    // The page cache pages the filesystem dirties behind a write's back (see "End of file" in
    // docs/design.md): the page holding end of file `size`, written back and dropped.
    virtual int drop_end_of_file_page(uint64_t size) = 0;
    // After a size change from `old_size`: the old and the new end-of-file pages.
    virtual void drop_size_change_pages(uint64_t old_size) = 0;
};

}  // namespace diofs

#pragma once
// The dbopt side of one open regular file: the engine, its backing I/O and the inode's range
// lock. Made by Filesystem::open_direct; every read, write, fsync and flush of a dbopt file goes
// through it.

#include "diofs/direct_io_engine.hpp"
#include "diofs/posix_backing_io.hpp"
#include "diofs/range_lock.hpp"
#include "diofs/unique_fd.hpp"

#include <memory>

namespace diofs {

class DirectFile {
public:
    // O_DIRECT for the body, `buffered_fd` (not owned) for the bounce page.
    DirectFile(UniqueFd direct_fd, int buffered_fd, DioAlignment alignment, RangeLock& ranges,
               size_t page_size);
    // The filesystem refuses O_DIRECT: buffered, dropping pages behind itself.
    DirectFile(int buffered_fd, RangeLock& ranges, size_t page_size);

    ssize_t write(const char* buf, size_t length, uint64_t offset);
    // After the file's size was changed some other way (truncate, fallocate) from `old_size`:
    // the pages the filesystem zeroed at the old and new end of file are dropped.
    void size_changed(uint64_t old_size);
    // On success `view` points into this thread's read buffer, valid until its next read.
    ssize_t read(uint64_t offset, size_t length, ReadView& view);
    // The dbopt part of fsync (the caller also syncs the buffered descriptor): 0 or -errno.
    int sync(bool datasync);
    // The dbopt part of flush (close-time errors of the direct descriptor, the rest of the
    // fallback's dirty pages): 0 or -errno.
    int flush();

    // copy_file_range inside a dbopt mount: shares extents where the filesystem can
    // (FICLONERANGE), else copies in large aligned direct chunks. Never the backing
    // filesystem's own copy_file_range, which on ext4 goes through the page cache.
    static ssize_t copy(DirectFile& in, int in_fd, uint64_t off_in, DirectFile& out, int out_fd,
                        uint64_t off_out, size_t length);

    bool is_direct() const { return static_cast<bool>(direct_fd_); }
    const DioAlignment& alignment() const { return engine_.alignment(); }

private:
    uint64_t backing_size() const;

    const int buffered_fd_;
    const size_t page_size_;
    UniqueFd direct_fd_;  // empty for the fallback
    std::unique_ptr<BackingIo> io_;
    DroppingBackingIo* dropping_ = nullptr;  // io_, when it is the fallback
    DirectIoEngine engine_;
    RangeLock& ranges_;
};

}  // namespace diofs

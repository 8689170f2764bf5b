#pragma once
// The backing files behind the dbopt engine, made by Filesystem::open_direct and handed to the
// file's DirectFile.
//
// BufferedFdBackingIo: what both below do through the open file's buffered descriptor besides
// reading and writing: fstat, fallocate (reservations), fstatvfs, ftruncate, futimens,
// FICLONERANGE, and the drop of the end-of-file pages.
//
// PosixBackingIo: an O_DIRECT descriptor (its own) for the aligned body, and the buffered
// descriptor of the same file for the bounce page. A bounce write is PolyServe's way: pwrite() the odd bytes into
// the page cache, sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER) over the pages they touch,
// then POSIX_FADV_DONTNEED over the same pages. When it returns the bytes are on the device
// and the pages are gone. Why this and not an O_DIRECT read-modify-write of the enclosing
// sector: the file's size stays exactly what was written (no padded block to truncate back
// while another writer extends the file), holes stay holes, and it works on every filesystem
// that can do buffered I/O. One write of a file at a time (InodeIo::writing) keeps a bounce write
// and a direct write of the same page apart.
//
// DroppingBackingIo: for a filesystem that refuses O_DIRECT. Everything is buffered; reads drop
// the pages they read at once, writes drop theirs behind themselves every kDropChunk bytes
// (and at flush, fsync and release), so the page cache holds at most one chunk per open file.

#include "diofs/io/backing_io.hpp"
#include "diofs/unique_fd.hpp"

#include <cstdint>
#include <mutex>

namespace diofs {

// The buffered descriptor is not owned: it is the open file's own (OpenFile::fd).
class BufferedFdBackingIo : public BackingIo {
public:
    int stat(Status& out) override;
    int reserve(uint64_t offset, uint64_t length) override;
    int64_t free_space() override;
    int truncate(uint64_t size) override;
    int set_mtime(const timespec& mtime) override;
    // `source` must be a BufferedFdBackingIo too (-EXDEV otherwise).
    int clone_from(BackingIo& source, uint64_t source_offset, uint64_t length,
                   uint64_t offset) override;
    int drop_end_of_file_page(uint64_t size) override;
    void drop_size_change_pages(uint64_t old_size) override;

protected:
    BufferedFdBackingIo(int buffered_fd, size_t page_size)
        : buffered_fd_(buffered_fd), page_size_(page_size) {}

    const int buffered_fd_;
    const size_t page_size_;
};

class PosixBackingIo : public BufferedFdBackingIo {
public:
    // `direct_fd` (O_DIRECT) is owned, `buffered_fd` is not.
    PosixBackingIo(UniqueFd direct_fd, int buffered_fd, size_t page_size)
        : BufferedFdBackingIo(buffered_fd, page_size), direct_fd_(std::move(direct_fd)) {}

    ssize_t direct_pread(char* buf, size_t length, uint64_t offset) override;
    ssize_t direct_pwrite(const char* buf, size_t length, uint64_t offset) override;
    ssize_t bounce_pwrite(const char* buf, size_t length, uint64_t offset) override;
    bool is_direct() const override { return true; }
    int direct_fd() const override { return direct_fd_.get(); }
    // A writeback error is recorded per open file description: the O_DIRECT one is asked here.
    int sync(bool datasync) override;
    int flush() override { return 0; }

private:
    const UniqueFd direct_fd_;
};

class DroppingBackingIo : public BufferedFdBackingIo {
public:
    static constexpr uint64_t kDropChunk = 8u << 20;

    DroppingBackingIo(int buffered_fd, size_t page_size) : BufferedFdBackingIo(buffered_fd, page_size) {}

    ssize_t direct_pread(char* buf, size_t length, uint64_t offset) override;
    ssize_t direct_pwrite(const char* buf, size_t length, uint64_t offset) override;
    ssize_t bounce_pwrite(const char* buf, size_t length, uint64_t offset) override {
        return direct_pwrite(buf, length, offset);
    }
    bool is_direct() const override { return false; }
    // Both write back and drop what is still dirty (drop_all).
    int sync(bool) override { return drop_all(); }
    int flush() override { return drop_all(); }
    // Writes back and drops what is still dirty; returns 0 or the writeback's -errno.
    int drop_all();

private:
    // Guards the window of written, not yet dropped bytes. Taken after InodeIo::writing (never
    // the other way round), held across the writeback of one chunk.
    std::mutex mutex_;
    uint64_t dirty_begin_ = 0, dirty_end_ = 0;
};

// Drops the cached pages of [begin, end) (page boundaries) of `fd`'s file, and of the large
// folios around them; checks with cachestat(2) and retries a few times when the kernel skipped
// a folio that was held at that moment.
void drop_cached_range(int fd, uint64_t begin, uint64_t end);

// Writes [offset, offset + length) of `fd` back to the device, waiting for it, then drops the
// pages (rounded out to `page_size`: POSIX_FADV_DONTNEED leaves partial pages). 0 or -errno.
int write_back_and_drop(int fd, uint64_t offset, uint64_t length, size_t page_size);

// The page that holds end of file `size`, when `size` is not a page boundary: written back and
// dropped. Filesystems zero the unused part of the last block through the page cache when a
// file grows past it or is cut inside it (xfs does, on direct writes beyond end of file and on
// truncate), so after every size change that page is cached, whatever path the bytes took.
int drop_end_of_file_page(int fd, uint64_t size, size_t page_size);

// After a size change of `fd`'s file from `old_size` (truncate, fallocate, a clone, a write past
// the end): the end-of-file pages, old and new, written back and dropped.
void drop_size_change_pages(int fd, uint64_t old_size, size_t page_size);

}  // namespace diofs

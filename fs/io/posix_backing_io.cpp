#include "diofs/io/posix_backing_io.hpp"

#include "diofs/counters.hpp"
#include "diofs/io/io_split.hpp"
#include "diofs/io/partial_transfers.hpp"
#include "diofs/syscalls.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <sys/syscall.h>

#include <algorithm>
#include <cerrno>
#include <thread>

namespace diofs {
namespace {

// sys::pread or sys::pwrite until all is done, end of file, or an error (EINTR is retried): a
// count, or -errno if nothing moved.
template <typename Io, typename Buf>
ssize_t full(Io io, int fd, Buf buf, size_t length, uint64_t offset) {
    return transfer_all(length, ShortCount::again(), [&](uint64_t done, uint64_t asked) {
               return sys::restarting([&] {
                   return io(fd, buf + done, asked, static_cast<off_t>(offset + done));
               });
           }).count_or_error();
}

// `n`, a count or -errno, after adding the count to `counter`.
ssize_t counted(Counter& counter, ssize_t n) {
    if (n > 0)
        counter.add(static_cast<uint64_t>(n));
    return n;
}

// The page cache's largest folio on x86-64 (PMD size). Folios are aligned to their size in the
// file, so a span of this size aligned to it holds every folio that touches a range inside it.
constexpr uint64_t kFolioSpan = 2u << 20;
constexpr int kDropAttempts = 8;

// cachestat(2) (Linux 6.5): how many pages of [offset, offset + length) are cached. glibc and
// Debian 12's kernel headers do not know it yet; -1 where the kernel does not either.
struct CachestatRange {
    uint64_t off, len;
};
struct Cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
constexpr long kSysCachestat = 451;

long cached_pages(int fd, uint64_t offset, uint64_t length) {
    CachestatRange range{offset, length};
    Cachestat stat{};
    if (::syscall(kSysCachestat, fd, &range, &stat, 0) != 0)
        return -1;
    return static_cast<long>(stat.nr_cache);
}

}  // namespace

void drop_cached_range(int fd, uint64_t begin, uint64_t end) {
    // POSIX_FADV_DONTNEED drops only folios that lie wholly inside its range, so it is asked for
    // the whole folio span around [begin, end): a page cached as part of a large folio (a file
    // read or written buffered before) goes too, and under dbopt no page of the file is meant
    // to be cached anyway. A folio still held for a moment (by the end of its writeback, or a
    // reader's flush) is skipped: the range is checked with cachestat and the drop retried.
    const uint64_t span_begin = round_down(begin, kFolioSpan);
    const uint64_t span_end = round_up(end, kFolioSpan);
    Counters& count = counters();
    count.backing_drops.add();
    long cached = 0;
    for (int attempt = 0; attempt < kDropAttempts; ++attempt) {
        if (attempt == 1)
            count.backing_drop_retries.add();
        ::posix_fadvise(fd, static_cast<off_t>(span_begin), static_cast<off_t>(span_end - span_begin),
                        POSIX_FADV_DONTNEED);
        cached = cached_pages(fd, begin, end - begin);
        if (cached <= 0)
            return;
        std::this_thread::yield();
    }
    count.resident_after_drop.add(static_cast<uint64_t>(cached));
}

int write_back_and_drop(int fd, uint64_t offset, uint64_t length, size_t page_size) {
    const uint64_t begin = round_down(offset, page_size);
    const uint64_t end = round_up(offset + length, page_size);
    int rv = 0;
    if (::sync_file_range(fd, static_cast<off_t>(begin), static_cast<off_t>(end - begin),
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                              SYNC_FILE_RANGE_WAIT_AFTER) != 0)
        rv = -errno;
    // Dropped even after a failed writeback: the error is reported, and what stays dirty the
    // kernel keeps anyway.
    drop_cached_range(fd, begin, end);
    return rv;
}

int drop_end_of_file_page(int fd, uint64_t size, size_t page_size) {
    if (size % page_size == 0)
        return 0;
    return write_back_and_drop(fd, size, 1, page_size);
}

void drop_size_change_pages(int fd, uint64_t old_size, size_t page_size) {
    drop_end_of_file_page(fd, old_size, page_size);
    struct stat st;
    if (::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) != old_size)
        drop_end_of_file_page(fd, static_cast<uint64_t>(st.st_size), page_size);
}

int BufferedFdBackingIo::stat(Status& out) {
    struct stat st;
    if (int rv = sys::fstat(buffered_fd_, &st); rv < 0)
        return rv;
    out = {static_cast<uint64_t>(st.st_size), st.st_mode, st.st_mtim};
    return 0;
}

int BufferedFdBackingIo::reserve(uint64_t offset, uint64_t length) {
    return sys::fallocate(buffered_fd_, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                          static_cast<off_t>(length));
}

int64_t BufferedFdBackingIo::free_space() {
    struct statvfs fs;
    if (int rv = sys::fstatvfs(buffered_fd_, &fs); rv < 0)
        return rv;
    return static_cast<int64_t>(static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize);
}

int BufferedFdBackingIo::truncate(uint64_t size) {
    return sys::ftruncate(buffered_fd_, static_cast<off_t>(size));
}

int BufferedFdBackingIo::set_mtime(const timespec& mtime) {
    const timespec times[2] = {{0, UTIME_OMIT}, mtime};
    return sys::futimens(buffered_fd_, times);
}

int BufferedFdBackingIo::clone_from(BackingIo& source, uint64_t source_offset, uint64_t length,
                                    uint64_t offset) {
    auto* from = dynamic_cast<BufferedFdBackingIo*>(&source);
    if (!from)
        return -EXDEV;
    file_clone_range clone = {static_cast<__s64>(from->buffered_fd_), source_offset, length, offset};
    return ::ioctl(buffered_fd_, FICLONERANGE, &clone) == 0 ? 0 : -errno;
}

int BufferedFdBackingIo::drop_end_of_file_page(uint64_t size) {
    return diofs::drop_end_of_file_page(buffered_fd_, size, page_size_);
}

void BufferedFdBackingIo::drop_size_change_pages(uint64_t old_size) {
    diofs::drop_size_change_pages(buffered_fd_, old_size, page_size_);
}

ssize_t PosixBackingIo::direct_pread(char* buf, size_t length, uint64_t offset) {
    // One call: a short O_DIRECT read is the end of the file, and the engine knows it.
    const ssize_t n = sys::restarting(
        [&] { return sys::pread(direct_fd_.get(), buf, length, static_cast<off_t>(offset)); });
    if (n < 0)
        return n;
    counters().read_direct.add(static_cast<uint64_t>(n));
    // An O_DIRECT read leaves pages that were cached before (the file was read or written
    // buffered, outside dbopt) where they are: they go now. Cheap when nothing is cached.
    if (n > 0)
        drop_cached_range(direct_fd_.get(), offset,
                          round_up(offset + static_cast<uint64_t>(n), page_size_));
    return n;
}

ssize_t PosixBackingIo::direct_pwrite(const char* buf, size_t length, uint64_t offset) {
    return counted(counters().written_direct,
                   full(sys::pwrite, direct_fd_.get(), buf, length, offset));
}

ssize_t PosixBackingIo::bounce_pwrite(const char* buf, size_t length, uint64_t offset) {
    ssize_t n =
        counted(counters().written_bounced, full(sys::pwrite, buffered_fd_, buf, length, offset));
    if (n <= 0)
        return n;
    int rv = write_back_and_drop(buffered_fd_, offset, static_cast<uint64_t>(n), page_size_);
    return rv < 0 ? rv : n;
}

int PosixBackingIo::sync(bool datasync) { return sys::fsync(direct_fd_.get(), datasync); }

ssize_t DroppingBackingIo::direct_pread(char* buf, size_t length, uint64_t offset) {
    ssize_t n = counted(counters().read_buffered_fallback,
                        full(sys::pread, buffered_fd_, buf, length, offset));
    if (n > 0)
        drop_cached_range(buffered_fd_, round_down(offset, page_size_),
                          round_up(offset + static_cast<uint64_t>(n), page_size_));
    return n;
}

ssize_t DroppingBackingIo::direct_pwrite(const char* buf, size_t length, uint64_t offset) {
    ssize_t n = counted(counters().written_buffered_fallback,
                        full(sys::pwrite, buffered_fd_, buf, length, offset));
    if (n <= 0)
        return n;
    std::lock_guard lock(mutex_);
    const uint64_t end = offset + static_cast<uint64_t>(n);
    if (dirty_end_ == dirty_begin_) {
        dirty_begin_ = offset;
        dirty_end_ = end;
    } else {
        dirty_begin_ = std::min(dirty_begin_, offset);
        dirty_end_ = std::max(dirty_end_, end);
    }
    if (dirty_end_ - dirty_begin_ >= kDropChunk) {
        int rv = write_back_and_drop(buffered_fd_, dirty_begin_, dirty_end_ - dirty_begin_, page_size_);
        dirty_begin_ = dirty_end_ = 0;
        if (rv < 0)
            return rv;
    }
    return n;
}

int DroppingBackingIo::drop_all() {
    std::lock_guard lock(mutex_);
    if (dirty_end_ == dirty_begin_)
        return 0;
    int rv = write_back_and_drop(buffered_fd_, dirty_begin_, dirty_end_ - dirty_begin_, page_size_);
    dirty_begin_ = dirty_end_ = 0;
    return rv;
}

}  // namespace diofs

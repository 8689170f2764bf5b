#include "diofs/direct_file.hpp"

#include "diofs/io_split.hpp"
#include "diofs/syscalls.hpp"

#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>

namespace diofs {
namespace {

// The most one copy_file_range request copies by hand: callers loop on short counts, and a
// worker thread should not be gone for long.
constexpr uint64_t kCopyPerRequest = 64u << 20;
constexpr uint64_t kCopyChunk = 1u << 20;

AlignedBuffer& thread_read_buffer() {
    thread_local AlignedBuffer buffer;
    return buffer;
}

}  // namespace

DirectFile::DirectFile(UniqueFd direct_fd, int buffered_fd, DioAlignment alignment,
                       RangeLock& ranges, size_t page_size)
    : buffered_fd_(buffered_fd),
      page_size_(page_size),
      direct_fd_(std::move(direct_fd)),
      io_(std::make_unique<PosixBackingIo>(direct_fd_.get(), buffered_fd, page_size)),
      engine_(alignment, page_size),
      ranges_(ranges) {}

DirectFile::DirectFile(int buffered_fd, RangeLock& ranges, size_t page_size)
    : buffered_fd_(buffered_fd),
      page_size_(page_size),
      engine_(DioAlignment{1, 1}, page_size),
      ranges_(ranges) {
    auto dropping = std::make_unique<DroppingBackingIo>(buffered_fd, page_size);
    dropping_ = dropping.get();
    io_ = std::move(dropping);
}

uint64_t DirectFile::backing_size() const {
    struct stat st;
    return sys::fstat(buffered_fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

ssize_t DirectFile::write(const char* buf, size_t length, uint64_t offset) {
    // A write that starts past an unaligned end of file makes the filesystem zero the rest of
    // the old last block through the page cache (xfs): that page is dropped after the write.
    const uint64_t old_size = is_direct() ? backing_size() : 0;
    ssize_t n = engine_.write(*io_, ranges_, buf, length, offset);
    if (n > 0 && offset > old_size)
        drop_end_of_file_page(buffered_fd_, old_size, page_size_);
    return n;
}

void DirectFile::size_changed(uint64_t old_size) {
    drop_size_change_pages(buffered_fd_, old_size, page_size_);
}

ssize_t DirectFile::read(uint64_t offset, size_t length, ReadView& view) {
    return engine_.read(*io_, offset, length, thread_read_buffer(), view);
}

int DirectFile::sync(bool datasync) {
    if (dropping_)
        return dropping_->drop_all();
    return sys::fsync(direct_fd_.get(), datasync);
}

int DirectFile::flush() {
    if (dropping_)
        return dropping_->drop_all();
    return sys::close_dup(direct_fd_.get());
}

ssize_t DirectFile::copy(DirectFile& in, int in_fd, uint64_t off_in, DirectFile& out, int out_fd,
                         uint64_t off_out, size_t length) {
    struct stat st;
    if (int rv = sys::fstat(in_fd, &st); rv < 0)
        return rv;
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (off_in >= size || length == 0)
        return 0;
    uint64_t want = std::min<uint64_t>(length, size - off_in);

    // Shared extents: nothing to copy at all (xfs, btrfs). The filesystem checks alignment and
    // says EINVAL or EOPNOTSUPP when it cannot; then the bytes are copied.
    file_clone_range clone = {static_cast<__s64>(in_fd), off_in, want, off_out};
    const uint64_t out_size = out.backing_size();
    if (::ioctl(out_fd, FICLONERANGE, &clone) == 0) {
        out.size_changed(out_size);
        return static_cast<ssize_t>(want);
    }

    want = std::min(want, kCopyPerRequest);
    uint64_t done = 0;
    while (done < want) {
        ReadView view;
        ssize_t n = in.read(off_in + done, std::min(want - done, kCopyChunk), view);
        if (n <= 0) {
            if (n < 0 && done == 0)
                return n;
            break;
        }
        ssize_t w = out.write(view.data, view.length, off_out + done);
        if (w < 0)
            return done ? static_cast<ssize_t>(done) : w;
        done += static_cast<uint64_t>(w);
        if (static_cast<size_t>(w) < view.length)
            break;
    }
    return static_cast<ssize_t>(done);
}

}  // namespace diofs

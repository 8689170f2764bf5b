#include "diofs/io/file_change.hpp"

#include "diofs/io/backing_io.hpp"
#include "diofs/io/posix_backing_io.hpp"
#include "diofs/syscalls.hpp"

#include <sys/stat.h>

namespace diofs {

int BackingPages::size(uint64_t& out) {
    if (io_) {
        BackingIo::Status st;
        const int rv = io_->stat(st);
        out = rv == 0 ? st.size : 0;
        return rv;
    }
    struct stat st;
    const int rv = sys::fstat(fd_, &st);
    out = rv == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return rv;
}

void BackingPages::drop(uint64_t old_size, uint64_t offset, uint64_t length) {
    if (io_) {
        io_->drop_size_change_pages(old_size);
        return;
    }
    if (length != 0)
        write_back_and_drop(fd_, offset, length, page_size_);
    drop_size_change_pages(fd_, old_size, page_size_);
}

FileChange::FileChange(InodeIo& io, BackingPages pages, KernelFile kernel)
    : io_(io),
      pages_(std::move(pages)),
      kernel_(std::move(kernel)),
      change_((io.before_change(), io)) {}

FileChange::~FileChange() {
    if (cleared_setid_ && kernel_.forget_attributes)
        kernel_.forget_attributes();
}

FileWrite::FileWrite(InodeIo& io, InodeIo::Participant& writer, uint64_t begin, uint64_t end,
                     KernelFile kernel)
    : kernel_(std::move(kernel)) {
    io.before_write(&writer, begin, end);
    writer.drop_read_ahead();
}

FileWrite::~FileWrite() {
    if (cleared_setid_ && kernel_.forget_attributes)
        kernel_.forget_attributes();
}

}  // namespace diofs

#include "diofs/io/inode_io.hpp"

#include <algorithm>
#include <tuple>

namespace diofs {

void InodeIo::attach(Participant* file) {
    std::lock_guard lock(mutex_);
    files_.push_back(file);
    had_open_files_.store(true, std::memory_order_release);
}

void InodeIo::detach(Participant* file) {
    std::lock_guard lock(mutex_);
    std::erase(files_, file);
}

void InodeIo::settle() {
    std::lock_guard lock(mutex_);
    for (Participant* f : files_)
        f->settle();
}

void InodeIo::before_write(const Participant* writer, uint64_t begin, uint64_t end) {
    std::lock_guard lock(mutex_);
    for (Participant* f : files_) {
        if (f == writer)
            continue;
        f->settle_overlapping(begin, end);
        f->drop_read_ahead();
    }
}

void InodeIo::before_change() {
    std::lock_guard lock(mutex_);
    for (Participant* f : files_) {
        f->settle();
        f->drop_read_ahead();
        f->changed();
    }
}

InodeIo::Pending InodeIo::pending() const {
    std::lock_guard lock(mutex_);
    Pending all;
    for (const Participant* f : files_) {
        const Pending p = f->pending();
        if (p.end == 0)
            continue;
        all.end = std::max(all.end, p.end);
        if (std::tie(p.last_write.tv_sec, p.last_write.tv_nsec) >
            std::tie(all.last_write.tv_sec, all.last_write.tv_nsec))
            all.last_write = p.last_write;
    }
    return all;
}

int InodeIo::stat_with_pending(const std::function<int(struct stat&)>& stat_backing,
                               struct stat& st) const {
    const Pending noted = pending();
    if (int rv = stat_backing(st); rv < 0)
        return rv;
    if (noted.end == 0)
        return 0;
    // The file is as long as the pending writes make it, and was modified when the last was
    // taken (what a filesystem that writes back later shows).
    st.st_size = std::max(st.st_size, static_cast<off_t>(noted.end));
    for (timespec* t : {&st.st_mtim, &st.st_ctim})
        if (std::tie(t->tv_sec, t->tv_nsec) < std::tie(noted.last_write.tv_sec, noted.last_write.tv_nsec))
            *t = noted.last_write;
    return 0;
}

}  // namespace diofs

#include "diofs/io/inode_io.hpp"

#include <algorithm>
#include <tuple>

namespace diofs {

void InodeIo::attach(Participant* file) {
    std::lock_guard lock(mutex_);
    files_.push_back(file);
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

}  // namespace diofs

#include "diofs/inode_io.hpp"

#include <algorithm>

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
    }
}

uint64_t InodeIo::pending_end() const {
    std::lock_guard lock(mutex_);
    uint64_t end = 0;
    for (const Participant* f : files_)
        end = std::max(end, f->pending_end());
    return end;
}

}  // namespace diofs

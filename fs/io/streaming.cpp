#include "diofs/io/streaming.hpp"

namespace diofs {

void Streaming::add(InodeIo::Participant* file) {
    std::lock_guard lock(files_mutex_);
    files_.insert(file);
}

void Streaming::remove(InodeIo::Participant* file) {
    std::lock_guard lock(files_mutex_);
    files_.erase(file);
}

void Streaming::settle_all() {
    std::lock_guard lock(files_mutex_);
    for (InodeIo::Participant* file : files_)
        file->settle();
}

}  // namespace diofs

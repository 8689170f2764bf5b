#include "diofs/open_handles.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <vector>

namespace diofs {

void OpenHandles::close(uint64_t handle) {
    Owned closing(nullptr, nullptr);  // destroyed after the lock is released
    {
        std::lock_guard lock(mutex_);
        auto it = objects_.find(handle);
        if (it == objects_.end()) {
            spdlog::critical("the kernel releases file handle {:#x}, which is not open", handle);
            std::abort();
        }
        closing = std::move(it->second);
        objects_.erase(it);
    }
}

size_t OpenHandles::close_all() {
    std::vector<Owned> closing;  // destroyed after the lock is released
    {
        std::lock_guard lock(mutex_);
        closing.reserve(objects_.size());
        for (auto& [handle, object] : objects_)
            closing.push_back(std::move(object));
        objects_.clear();
    }
    return closing.size();
}

}  // namespace diofs

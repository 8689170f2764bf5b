#pragma once
// The handles (fi->fh) of the open files and directories the daemon handed to the kernel, each
// owning its OpenFile or OpenDir until the kernel releases it. When the session ends while the
// kernel still holds some (the daemon was stopped with files open: their releases never come),
// close_all() closes them as release would, so that what they hold back is written out before
// the mount goes and nothing is left behind.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace diofs {

class OpenHandles {
public:
    // Owns `object` from now on; returns the handle the kernel will know it by (its address),
    // for fi->fh. Added before the reply that hands it over, so that a release coming at once
    // finds it.
    template <typename T>
    uint64_t add(std::unique_ptr<T> object) {
        const auto handle = reinterpret_cast<uint64_t>(object.get());
        Owned owned(object.release(), [](void* p) { delete static_cast<T*>(p); });
        std::lock_guard lock(mutex_);
        objects_.emplace(handle, std::move(owned));
        return handle;
    }

    // Closes `handle` (its release, or a reply the kernel did not take): its object is
    // destroyed by the calling thread, after the lock is released. A handle that was never
    // added, or was closed already, is a broken invariant: the daemon aborts.
    void close(uint64_t handle);

    // Closes every handle left; returns how many there were.
    size_t close_all();

    // How many are open now.
    size_t count() {
        std::lock_guard lock(mutex_);
        return objects_.size();
    }

private:
    using Owned = std::unique_ptr<void, void (*)(void*)>;
    // Guards objects_. Taken alone, around one map insert or erase (or the move of all of them):
    // an object is destroyed after the lock is released, because a DirectFile writes out what it
    // holds back when it goes.
    std::mutex mutex_;
    std::unordered_map<uint64_t, Owned> objects_;
};

}  // namespace diofs

#include "diofs/inode_table.hpp"

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace diofs {

Inode& InodeTable::acquire(UniqueFd fd, const struct stat& st) {
    UniqueFd duplicate;  // closed after the lock is released
    std::lock_guard lock(mutex_);
    auto& slot = inodes_[{st.st_dev, st.st_ino}];
    if (!slot)
        slot = std::make_unique<Inode>(std::move(fd), st.st_dev, st.st_ino, st.st_mode & S_IFMT);
    else
        duplicate = std::move(fd);
    ++slot->nlookup;
    return *slot;
}

uint64_t InodeTable::forget(Inode& inode, uint64_t n) {
    std::unique_ptr<Inode> dead;  // destroyed (its descriptor closed) after the lock is released
    std::lock_guard lock(mutex_);
    if (n > inode.nlookup) {
        spdlog::critical("inode {}:{}: kernel forgets {} references but holds only {}",
                         inode.dev, inode.ino, n, inode.nlookup);
        std::abort();
    }
    inode.nlookup -= n;
    uint64_t left = inode.nlookup;
    if (left == 0) {
        auto it = inodes_.find({inode.dev, inode.ino});
        dead = std::move(it->second);
        inodes_.erase(it);
    }
    return left;
}

size_t InodeTable::size() const {
    std::lock_guard lock(mutex_);
    return inodes_.size();
}

}  // namespace diofs

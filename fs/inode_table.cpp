#include "diofs/inode_table.hpp"

#include "diofs/syscalls.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace diofs {

std::optional<FileHandle> FileHandle::of(int path_fd) {
    FileHandle handle;
    if (sys::name_to_handle(path_fd, handle.type, handle.bytes) < 0)
        return std::nullopt;
    return handle;
}

InodeTable::~InodeTable() = default;

Inode& InodeTable::acquire(UniqueFd fd, const struct stat& st, std::optional<FileHandle> handle) {
    // Closed after the lock is released.
    UniqueFd duplicate;
    std::vector<std::shared_ptr<const UniqueFd>> evicted;
    std::unique_lock lock(mutex_);
    if (auto it = mount_fds_.find(st.st_dev); handle && (it == mount_fds_.end() || !it->second))
        handle.reset();  // it could not be opened, or is not to be used
    auto& slot = inodes_[{st.st_dev, st.st_ino}];
    // A number is reused only once its inode is gone, which a held descriptor prevents: so
    // only two handles can tell, and only when both exist.
    if (slot && slot->handle && handle && *slot->handle != *handle) {
        uncache(*slot);
        evicted.push_back(std::move(slot->fd));
        Inode* old = slot.get();
        stale_.emplace(old, std::move(slot));
    } else if (slot && kernel_keeps_sizes_.load() && slot->type == S_IFREG &&
               !slot->view.open() && (slot->view.superseded() || slot->view.differs(st))) {
        // The same inode, changed around the mount: a new entry gives the kernel a new inode,
        // which takes the size and times of this lookup. The old one keeps its descriptor.
        Inode* old = slot.get();
        stale_.emplace(old, std::move(slot));
    }
    if (!slot) {
        slot = std::make_unique<Inode>(st.st_dev, st.st_ino, st.st_mode & S_IFMT, std::move(handle));
        slot->fd = std::make_shared<const UniqueFd>(std::move(fd));
        if (slot->handle)
            cache(*slot, evicted);
        else
            ++pinned_;
    } else if (slot->handle && !slot->fd) {
        slot->fd = std::make_shared<const UniqueFd>(std::move(fd));
        cache(*slot, evicted);
    } else {
        duplicate = std::move(fd);
    }
    ++slot->nlookup;
    Inode& inode = *slot;
    // Only descriptors held for life can bring the daemon to its limit (the cache is bounded
    // below it): say so once, while there is room left to act.
    const size_t held = pinned_ + recent_.size() + mount_fds_.size();
    const bool warn = descriptor_limit_ > 0 && held >= descriptor_limit_ / 10 * 8 &&
                      pinned_ > 0 && !warned_pinned_.exchange(true);
    lock.unlock();
    if (warn)
        spdlog::warn("{} descriptors held for inodes the kernel remembers, of the limit of {}: "
                     "{} of them on filesystems that give no file handles, held until the "
                     "kernel forgets their inodes; past the limit lookups and opens fail with "
                     "EMFILE (logged once)",
                     held, descriptor_limit_, pinned_);
    return inode;
}

uint64_t InodeTable::forget(Inode& inode, uint64_t n) {
    // Destroyed (its descriptor closed) after the lock is released.
    std::unique_ptr<Inode> dead;
    std::lock_guard lock(mutex_);
    if (n > inode.nlookup) {
        spdlog::critical("inode {}:{}: kernel forgets {} references but holds only {}",
                         inode.dev, inode.ino, n, inode.nlookup);
        std::abort();
    }
    inode.nlookup -= n;
    uint64_t left = inode.nlookup;
    if (left == 0) {
        uncache(inode);
        if (!inode.handle)
            --pinned_;
        auto it = inodes_.find({inode.dev, inode.ino});
        if (it != inodes_.end() && it->second.get() == &inode) {
            dead = std::move(it->second);
            inodes_.erase(it);
        } else {
            auto s = stale_.find(&inode);
            dead = std::move(s->second);
            stale_.erase(s);
        }
    }
    return left;
}

int InodeTable::path_fd(Inode& inode, PathFd& out) {
    int mount_fd;
    {
        std::lock_guard lock(mutex_);
        if (inode.fd) {
            if (inode.handle)
                recent_.splice(recent_.begin(), recent_, inode.recent);
            out = PathFd(inode.fd);
            return 0;
        }
        if (!inode.handle)
            return -ESTALE;
        mount_fd = mount_fds_.at(inode.dev).get();  // never closed before the table is
    }
    int fd = sys::open_by_handle(mount_fd, inode.handle->type, inode.handle->bytes,
                                 O_PATH | O_NOFOLLOW);
    if (fd == -EMFILE || fd == -ENFILE) {
        // Open files and directories took the room: half of the cache makes some again.
        if (!warned_exhausted_.exchange(true))
            spdlog::warn("out of descriptors ({}) reopening an inode: the cache of inode "
                         "descriptors is halved to make room (logged once)",
                         std::strerror(-fd));
        std::vector<std::shared_ptr<const UniqueFd>> evicted;
        {
            std::lock_guard lock(mutex_);
            for (size_t keep = recent_.size() / 2; recent_.size() > keep;) {
                Inode* last = recent_.back();
                recent_.pop_back();
                evicted.push_back(std::move(last->fd));
            }
        }
        evicted.clear();
        fd = sys::open_by_handle(mount_fd, inode.handle->type, inode.handle->bytes,
                                 O_PATH | O_NOFOLLOW);
    }
    if (fd < 0)
        return fd;
    auto opened = std::make_shared<const UniqueFd>(fd);
    std::vector<std::shared_ptr<const UniqueFd>> evicted;  // closed after the lock is released
    std::lock_guard lock(mutex_);
    if (!inode.fd) {
        inode.fd = std::move(opened);
        cache(inode, evicted);
    }
    out = PathFd(inode.fd);
    return 0;
}

void InodeTable::release_descriptor(dev_t dev, ino_t ino) {
    std::shared_ptr<const UniqueFd> released;  // closed after the lock is released
    std::lock_guard lock(mutex_);
    auto it = inodes_.find({dev, ino});
    if (it == inodes_.end() || !it->second->handle)
        return;
    uncache(*it->second);
    released = std::move(it->second->fd);
}

void InodeTable::add_mount_fd(dev_t dev, UniqueFd fd) {
    UniqueFd duplicate;
    std::lock_guard lock(mutex_);
    auto [it, added] = mount_fds_.try_emplace(dev);
    if (added)
        it->second = std::move(fd);
    else
        duplicate = std::move(fd);
}

bool InodeTable::knows_device(dev_t dev) const {
    std::lock_guard lock(mutex_);
    return mount_fds_.find(dev) != mount_fds_.end();
}

void InodeTable::cache(Inode& inode, std::vector<std::shared_ptr<const UniqueFd>>& evicted) {
    recent_.push_front(&inode);
    inode.recent = recent_.begin();
    while (recent_.size() > cache_size_) {
        Inode* last = recent_.back();
        recent_.pop_back();
        evicted.push_back(std::move(last->fd));
    }
}

void InodeTable::uncache(Inode& inode) {
    if (inode.handle && inode.fd)
        recent_.erase(inode.recent);
}

size_t InodeTable::size() const {
    std::lock_guard lock(mutex_);
    return inodes_.size() + stale_.size();
}

std::vector<Inode*> InodeTable::writing() const {
    std::vector<Inode*> out;
    std::lock_guard lock(mutex_);
    for (const auto& [key, inode] : inodes_)
        if (inode->view.writing())
            out.push_back(inode.get());
    for (const auto& [key, inode] : stale_)
        if (inode->view.writing())
            out.push_back(inode.get());
    return out;
}

size_t InodeTable::descriptors() const {
    std::lock_guard lock(mutex_);
    return pinned_ + recent_.size() + mount_fds_.size();
}

}  // namespace diofs

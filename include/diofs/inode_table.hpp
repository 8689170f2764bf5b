#pragma once
// The inodes the kernel knows about. Each is keyed by the backing file's (st_dev, st_ino), so
// hard links share one entry, and is reached through an O_PATH descriptor with *at() calls:
// no path is resolved twice, no symlink followed.
//
// Lookup counting follows the FUSE protocol: every reply that hands the kernel an entry
// (lookup, create, mknod, mkdir, symlink, link, readdirplus) adds one reference, and the
// kernel gives them back with forget. At zero the entry goes away.
//
// The kernel may remember any number of inodes (a `find` over a directory of 20,000 files
// leaves 20,000), and a descriptor held for each would run the daemon out of them. So where
// the backing filesystem gives file handles (name_to_handle_at: ext4, xfs, btrfs, tmpfs...),
// an entry keeps its handle, and its O_PATH descriptor is one of a bounded cache of the most
// recently used ones, reopened with open_by_handle_at when it was let go: an inode the kernel
// merely remembers costs memory, not a descriptor. Where there are no handles (a FUSE or
// network filesystem may give none), the entry holds its descriptor for its whole life, as
// passthrough_hp does, and a warning is logged once when those near the descriptor limit.

#include "diofs/io/inode_io.hpp"
#include "diofs/kernel_view.hpp"
#include "diofs/record_locks.hpp"
#include "diofs/unique_fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace diofs {

// A backing filesystem's handle of one inode (name_to_handle_at): it opens that inode, under
// whatever name it has now, and fails with ESTALE once the inode is gone.
struct FileHandle {
    int type = 0;
    std::vector<unsigned char> bytes;

    bool operator==(const FileHandle&) const = default;

    // The handle of what `path_fd` (an O_PATH descriptor) points at, or nothing when its
    // filesystem gives none.
    static std::optional<FileHandle> of(int path_fd);
};

// An O_PATH descriptor of an inode, kept open for as long as a copy of it lives: a request
// holds one while it uses the descriptor, so a cache eviction by another thread closes it only
// after that request is done.
class PathFd {
public:
    PathFd() = default;
    explicit PathFd(std::shared_ptr<const UniqueFd> fd) : fd_(std::move(fd)) {}
    int get() const { return fd_->get(); }
    explicit operator bool() const { return fd_ != nullptr; }

private:
    std::shared_ptr<const UniqueFd> fd_;
};

struct Inode {
    Inode(dev_t d, ino_t i, mode_t t, std::optional<FileHandle> h)
        : dev(d), ino(i), type(t), handle(std::move(h)) {}

    const dev_t dev;
    const ino_t ino;
    const mode_t type;  // S_IFMT bits: an inode never changes type
    // Set when the backing filesystem gives handles: then `fd` is a cached descriptor that
    // may be let go and reopened; without a handle `fd` is held for the inode's whole life.
    const std::optional<FileHandle> handle;

    // Guarded by InodeTable::mutex_ (never touched without it).
    uint64_t nlookup = 0;
    std::shared_ptr<const UniqueFd> fd;  // O_PATH | O_NOFOLLOW, or null (see `handle`)
    std::list<Inode*>::iterator recent;  // its place in InodeTable::recent_, while `fd` is cached

    // What the open dbopt files of this inode share (see inode_io.hpp).
    InodeIo io;
    // The POSIX record locks programs hold on it, kept on the backing file (record_locks.hpp).
    PosixLocks posix_locks;
    // Under the writeback window: what the kernel believes of the file (kernel_view.hpp).
    KernelView view;
};

class InodeTable {
public:
    // `cache_size`: how many descriptors of inodes with handles are kept open at most.
    // `descriptor_limit`: the daemon's RLIMIT_NOFILE, for the warning about held descriptors.
    explicit InodeTable(size_t cache_size = 1024, uint64_t descriptor_limit = 0)
        : cache_size_(std::max<size_t>(cache_size, 1)), descriptor_limit_(descriptor_limit) {}
    ~InodeTable();

    // The entry for st's (st_dev, st_ino) with one more lookup reference; `fd` (an O_PATH
    // descriptor of it) becomes its descriptor, or is closed when the entry already has one.
    // `handle` is the handle of `fd` (FileHandle::of), nothing when there is none. When the
    // entry exists with another handle, its inode was deleted and its number reused: the old
    // entry stays for the kernel's references to it (which then fail with ESTALE), unlisted,
    // and a new one is made. So too, when the kernel keeps the sizes of files
    // (kernel_keeps_sizes), for a regular file that no open file of the mount has and that
    // changed around the mount (KernelView::differs), or was found so (KernelView::supersede):
    // the old entry keeps serving the kernel's old inode, which goes at its FORGET.
    Inode& acquire(UniqueFd fd, const struct stat& st, std::optional<FileHandle> handle);
    // The kernel keeps its own sizes and times of regular files (the writeback window).
    void kernel_keeps_sizes() { kernel_keeps_sizes_.store(true); }

    // Gives back `n` references of `inode`; at zero the entry is destroyed and `inode` must
    // not be used again. Returns the references left. Giving back more than were taken is a
    // broken invariant (the kernel and the table disagree): the daemon aborts.
    uint64_t forget(Inode& inode, uint64_t n);

    // An O_PATH descriptor of `inode` in `out`: its cached one, or one reopened from its
    // handle. 0, or -errno: -ESTALE when the inode no longer exists. Reopening by handle needs
    // CAP_DAC_READ_SEARCH: call this as the daemon, before switching to a caller's credentials.
    int path_fd(Inode& inode, PathFd& out);

    // Lets go of the cached descriptor of the inode (dev, ino), if the table has one: after
    // the last name of a file was removed, so that the daemon holds nothing of it (its space
    // comes back) by the time the removal is answered. A request using the descriptor at this
    // moment keeps it until it ends. An entry without handle keeps its descriptor: it has no
    // other way to reach its inode.
    void release_descriptor(dev_t dev, ino_t ino);

    // Where open_by_handle_at finds the filesystem of device `dev`: a descriptor of any
    // directory on it, opened for reading (an O_PATH descriptor is refused with EBADF), or an
    // empty one when its handles are not to be used. The first one given for a device is kept
    // for the table's life; later ones are closed. Entries of a device without a descriptor
    // get no handle (they keep their descriptors).
    void add_mount_fd(dev_t dev, UniqueFd fd);
    // Whether add_mount_fd was called for `dev`.
    bool knows_device(dev_t dev) const;

    // How many inodes are held (the root is not in the table).
    size_t size() const;
    // The inodes that open files of the mount write through the writeback window
    // (KernelView::writing): the kernel may hold dirty pages of them. Each stays in the table
    // while such a file is open.
    std::vector<Inode*> writing() const;
    // How many descriptors the table holds: cached ones, those of entries without handle, and
    // the mount descriptors.
    size_t descriptors() const;

private:
    // With mutex_ held: `inode`'s descriptor becomes the most recently used; past cache_size_,
    // the least recently used ones are moved to `evicted` (closed by the caller after the
    // lock is released).
    void cache(Inode& inode, std::vector<std::shared_ptr<const UniqueFd>>& evicted);
    void uncache(Inode& inode);
    void note_pinned();

    // Guards inodes_, stale_, recent_, mount_fds_, pinned_ and every Inode's nlookup, fd and
    // recent. Taken alone: no other lock is held while taking it, and nothing that blocks (no
    // system call, no reply) runs under it: descriptors are opened before and closed after.
    mutable std::mutex mutex_;
    std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>> inodes_;
    // Entries whose inode number was reused while the kernel still held them.
    std::map<Inode*, std::unique_ptr<Inode>> stale_;
    std::list<Inode*> recent_;  // the cached descriptors, most recently used first
    std::map<dev_t, UniqueFd> mount_fds_;
    size_t pinned_ = 0;  // entries without handle (each holds its descriptor)
    const size_t cache_size_;
    const uint64_t descriptor_limit_;
    std::atomic<bool> warned_pinned_ = false;
    std::atomic<bool> kernel_keeps_sizes_ = false;
    std::atomic<bool> warned_exhausted_ = false;
};

}  // namespace diofs

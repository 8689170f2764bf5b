#pragma once
// The inodes the kernel knows about. Each is keyed by the backing file's (st_dev, st_ino), so
// hard links share one entry, and holds an O_PATH descriptor through which every operation
// reaches the backing file with *at() calls: no path is resolved twice, no symlink followed.
//
// Lookup counting follows the FUSE protocol: every reply that hands the kernel an entry
// (lookup, create, mknod, mkdir, symlink, link, readdirplus) adds one reference, and the
// kernel gives them back with forget. At zero the entry and its descriptor go away.

#include "diofs/inode_io.hpp"
#include "diofs/locks.hpp"
#include "diofs/unique_fd.hpp"

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace diofs {

struct Inode {
    Inode(UniqueFd fd, dev_t d, ino_t i, mode_t t) : path_fd(std::move(fd)), dev(d), ino(i), type(t) {}

    const UniqueFd path_fd;  // O_PATH | O_NOFOLLOW, for the inode's whole life
    const dev_t dev;
    const ino_t ino;
    const mode_t type;  // S_IFMT bits: an inode never changes type

    // Guarded by InodeTable::mutex_ (never touched without it).
    uint64_t nlookup = 0;

    // What the open dbopt files of this inode share (see inode_io.hpp).
    InodeIo io;
    // The POSIX record locks programs hold on it, kept on the backing file (locks.hpp).
    PosixLocks posix_locks;
};

class InodeTable {
public:
    // The entry for st's (st_dev, st_ino) with one more lookup reference. When the entry is
    // new it adopts `fd`; when it exists, `fd` (another descriptor of the same file) is closed.
    Inode& acquire(UniqueFd fd, const struct stat& st);

    // Gives back `n` references of `inode`; at zero the entry is destroyed and `inode` must
    // not be used again. Returns the references left. Giving back more than were taken is a
    // broken invariant (the kernel and the table disagree): the daemon aborts.
    uint64_t forget(Inode& inode, uint64_t n);

    // How many inodes are held (the root is not in the table).
    size_t size() const;

private:
    // Guards inodes_ and every Inode::nlookup. Taken alone: no other lock is held while
    // taking it, and nothing that blocks (no system call, no reply) runs under it.
    mutable std::mutex mutex_;
    std::map<std::pair<dev_t, ino_t>, std::unique_ptr<Inode>> inodes_;
};

}  // namespace diofs

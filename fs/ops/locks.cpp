// Locks: flock() and POSIX record locks, passed to the backing filesystem (locks.hpp). A lock
// that must be waited for is waited for on a thread of LockWaiters, never on this worker.

#include "diofs/locks.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

#include <sys/file.h>

namespace diofs::ops {
namespace {

// The lock as the backing file takes it: an open-file-description lock must say pid 0.
struct flock ofd_lock(const struct flock* lock) {
    struct flock l = *lock;
    l.l_pid = 0;
    return l;
}

// Takes `attempt` at once, or when it must wait and the caller asked to, on a waiting thread;
// replies its result either way.
void lock_or_wait(fuse_req_t req, bool sleep, LockWaiters::Attempt attempt) {
    const int rv = attempt();
    if (!sleep || !LockWaiters::busy(rv))
        return reply_status(req, rv);
    filesystem_of(req).lock_waiters().wait(
        std::move(attempt), [req] { return fuse_req_interrupted(req) != 0; },
        [req](int result) { reply_status(req, result); });
}

// The owner's description of the inode's backing file: read and write where the daemon may
// open it so (the kernel already checked that the caller's descriptor allows the lock's type),
// else as the caller's descriptor was opened.
PosixLocks::Descriptor owner_descriptor(Filesystem& fs, Inode& inode, const fuse_file_info* fi,
                                        int& error) {
    return inode.posix_locks.of(
        fi->lock_owner,
        [&] {
            const int fd = fs.open_inode(inode, O_RDWR | O_NOCTTY);
            if (fd >= 0 || fd == -ENOENT)
                return fd;
            const int flags = sys::status_flags(open_file_of(fi).fd.get());
            if (flags < 0)
                return flags;
            return fs.open_inode(inode, (flags & O_ACCMODE) | O_NOCTTY);
        },
        error);
}

void getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock) {
    guarded(req, "getlk", [&] {
        int error;
        PosixLocks::Descriptor fd = owner_descriptor(filesystem_of(req), filesystem_of(req).inode(ino), fi,
                                                     error);
        if (!fd)
            return reply_status(req, error);
        struct flock l = ofd_lock(lock);
        if (int rv = sys::fcntl_lock(fd->get(), F_OFD_GETLK, &l); rv < 0)
            return reply_status(req, rv);
        l.l_pid = 0;  // the holder may be on another node (OFD locks say -1)
        fuse_reply_lock(req, &l);
    });
}

void setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock, int sleep) {
    guarded(req, "setlk", [&] {
        Inode& inode = filesystem_of(req).inode(ino);
        PosixLocks::Descriptor fd;
        if (lock->l_type == F_UNLCK) {
            fd = inode.posix_locks.find(fi->lock_owner);
            if (!fd)
                return reply_status(req, 0);  // the owner holds nothing here
        } else {
            int error;
            fd = owner_descriptor(filesystem_of(req), inode, fi, error);
            if (!fd)
                return reply_status(req, error);
        }
        lock_or_wait(req, sleep != 0, [fd, l = ofd_lock(lock)]() mutable {
            return sys::fcntl_lock(fd->get(), F_OFD_SETLK, &l);
        });
    });
}

void flock(fuse_req_t req, fuse_ino_t, fuse_file_info* fi, int op) {
    guarded(req, "flock", [&] {
        // The open file outlives the wait: the kernel releases it only after this request.
        const int fd = open_file_of(fi).fd.get();
        const bool sleep = !(op & (LOCK_NB | LOCK_UN));
        lock_or_wait(req, sleep, [fd, op = op | LOCK_NB] { return sys::flock(fd, op); });
    });
}

}  // namespace

void add_lock_operations(fuse_lowlevel_ops& ops) {
    ops.getlk = getlk;
    ops.setlk = setlk;
    ops.flock = flock;
}

}  // namespace diofs::ops

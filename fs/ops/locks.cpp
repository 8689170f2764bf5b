// Locks: flock() and record locks, passed to the backing filesystem (record_locks.hpp). A lock that
// must be waited for is waited for by LockWaiters: the request is held back, no thread waits.

#include "diofs/record_locks.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

#include <sys/file.h>

namespace diofs::ops {
namespace {

void on_interrupt(fuse_req_t req, void* waiters) { static_cast<LockWaiters*>(waiters)->interrupt(req); }

// Takes `attempt` at once, or when it must wait and the caller asked to, holds the request
// back until LockWaiters has it; replies its result either way.
void lock_or_wait(fuse_req_t req, fuse_ino_t ino, bool sleep, LockWaiters::Attempt attempt) {
    auto& waiters = filesystem_of(req).lock_waiters();
    const int rv = attempt();
    if (rv == 0)
        waiters.released(ino);  // it may have let go of a range, or shared what was exclusive
    if (!sleep || !LockWaiters::busy(rv))
        return reply_status(req, rv);
    waiters.wait({ino, fuse_req_ctx(req)->uid, req}, std::move(attempt),
                 [req, &waiters, ino](int result) {
                     if (result == 0)
                         waiters.released(ino);
                     reply_status(req, result);
                 },
                 // The callback may come at once, on this thread, if the caller was interrupted
                 // already: it only marks the wait, the waiting thread answers.
                 [req, &waiters] { fuse_req_interrupt_func(req, on_interrupt, &waiters); });
}

// Opens a new description of `inode`'s backing file with `access`, for PosixLocks (as the
// daemon: the caller's access was checked at its own open).
PosixLocks::Open opener(Filesystem& fs, Inode& inode) {
    return [&fs, &inode](int access) { return fs.open_inode(inode, access | O_NOCTTY); };
}

// The access mode (O_RDONLY, O_WRONLY, O_RDWR) the caller opened its file with: its backing
// descriptor was opened with the same.
int access_of(const fuse_file_info* fi) {
    const int flags = sys::status_flags(open_file_of(fi).fd.get());
    return flags < 0 ? flags : flags & O_ACCMODE;
}

void getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock) {
    guarded(req, "getlk", [&] {
        auto& fs = filesystem_of(req);
        Inode& inode = fs.inode(ino);
        struct flock l = *lock;
        if (int rv = inode.posix_locks.test(fi->lock_owner, l, opener(fs, inode)); rv < 0)
            return reply_status(req, rv);
        fuse_reply_lock(req, &l);
    });
}

void setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock, int sleep) {
    guarded(req, "setlk", [&] {
        auto& fs = filesystem_of(req);
        Inode& inode = fs.inode(ino);
        const int access = access_of(fi);
        if (access < 0)
            return reply_status(req, access);
        // Each try takes the owner's description as it is then: a close by the owner while
        // the request waits ends the locks it held, not the one it waits for (record_locks.hpp).
        lock_or_wait(req, ino, sleep != 0,
                     [&fs, &inode, owner = fi->lock_owner, file = fi->fh, access, l = *lock] {
                         return inode.posix_locks.set(owner, file, access, l, opener(fs, inode));
                     });
    });
}

void flock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op) {
    guarded(req, "flock", [&] {
        // The open file outlives the wait: the kernel releases it only after this request.
        const int fd = open_file_of(fi).fd.get();
        const bool sleep = !(op & (LOCK_NB | LOCK_UN));
        lock_or_wait(req, ino, sleep, [fd, op = op | LOCK_NB] { return sys::flock(fd, op); });
    });
}

}  // namespace

void add_lock_operations(fuse_lowlevel_ops& ops) {
    ops.getlk = getlk;
    ops.setlk = setlk;
    ops.flock = flock;
}

}  // namespace diofs::ops

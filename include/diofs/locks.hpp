#pragma once
// Locks that reach the backing filesystem. Without them the kernel keeps flock() and fcntl()
// locks of a FUSE mount to itself, so two mounts of one shared directory (two nodes of a
// cluster filesystem) could both "hold" the same lock.
//
// flock(): taken on the open file's own backing descriptor, which stands for the kernel's open
// file description as flock() locks do (the kernel unlocks it at the last close).
//
// POSIX record locks (fcntl F_SETLK, F_SETLKW, F_GETLK, lockf): the kernel names their holder
// by a lock owner, one per process (its table of files), for every descriptor of the file.
// PosixLocks gives each owner of an inode an open file description of its own on the backing
// file and keeps its locks there as open-file-description locks (F_OFD_SETLK): they conflict
// with every other owner's locks, here and on other nodes, never with the owner's own, which
// merge and split as POSIX locks do. When the owner closes any descriptor of the file (FLUSH
// carries the owner) or dies (its descriptors close), its description is closed and every lock
// on it goes, as POSIX says. F_GETLK reports a conflicting lock with l_pid 0: its holder may be
// on another node.
//
// A lock that is held elsewhere and must be waited for (F_SETLKW, flock without LOCK_NB) is
// waited for by LockWaiters, never by a FUSE worker thread.

#include "diofs/unique_fd.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace diofs {

// The POSIX record locks of one inode, by owner.
class PosixLocks {
public:
    using Descriptor = std::shared_ptr<const UniqueFd>;
    // Opens a new description of the backing file: a descriptor or -errno.
    using Open = std::function<int()>;

    // The owner's description of the backing file, opened with `open` the first time (or
    // -errno in `error` and null). Held by the caller while it uses it: a close by the owner
    // meanwhile drops the owner's entry, and the description goes once the caller is done.
    Descriptor of(uint64_t owner, const Open& open, int& error);
    // The owner's description, or null when it has none (it holds no lock here).
    Descriptor find(uint64_t owner) const;
    // The owner closed a descriptor of the file: its locks go (with its description).
    void release(uint64_t owner);
    // Owners with a description, for tests.
    size_t owners() const;

private:
    mutable std::mutex mutex_;  // guards owners_; nothing blocks under it but a map change
    std::unordered_map<uint64_t, Descriptor> owners_;
};

// Requests that wait for a lock, each on a thread of its own (a FUSE worker that waited for a
// lock held elsewhere would be lost to the mount meanwhile; with two workers, two such waits
// would wedge it). The thread tries the lock again and again, every millisecond at first and
// then at most every 50 ms, until it has it, the backing filesystem answers an error, the caller
// is interrupted (a signal: EINTR) or the session ends. Waiters are not queued: whoever tries
// first after the lock is free gets it. At most kMostWaiting waits at once (each a thread);
// one more is answered ENOLCK at once, so that programs cannot make the daemon start threads
// without end.
class LockWaiters {
public:
    static constexpr size_t kMostWaiting = 1024;

    // Called on the waiting thread: 0, a "still held" error (-EAGAIN, -EACCES, -EWOULDBLOCK),
    // or another -errno.
    using Attempt = std::function<int()>;

    LockWaiters() = default;
    ~LockWaiters() { stop(); }
    LockWaiters(const LockWaiters&) = delete;
    LockWaiters& operator=(const LockWaiters&) = delete;

    // Whether `rv` from an attempt means that the lock is held elsewhere.
    static bool busy(int rv);

    // Runs `attempt` on a thread of its own until it is not busy, then calls `done` with its
    // result there; or with -EINTR once `interrupted` says so. After stop(), `done` is never
    // called (the session, and the request with it, are gone).
    void wait(Attempt attempt, std::function<bool()> interrupted, std::function<void(int)> done);
    // Ends every wait and joins the threads (at the end of the session).
    void stop();
    // Waits running now, for tests.
    size_t waiting() const;

private:
    struct Waiter {
        std::thread thread;
        std::atomic<bool> finished = false;
    };
    void reap_locked();

    mutable std::mutex mutex_;  // guards waiters_ and stopping_
    std::list<Waiter> waiters_;
    std::atomic<bool> stopping_ = false;
};

}  // namespace diofs

#pragma once
// Locks that reach the backing filesystem. Without them the kernel keeps flock() and fcntl()
// locks of a FUSE mount to itself, so two mounts of one shared directory (two nodes of a
// cluster filesystem) could both "hold" the same lock.
//
// flock(): taken on the open file's own backing descriptor, which stands for the kernel's open
// file description as flock() locks do (the kernel unlocks it at the last close).
//
// Record locks (fcntl F_SETLK, F_SETLKW, F_GETLK, lockf, and the open-file-description locks
// F_OFD_SETLK, F_OFD_SETLKW, F_OFD_GETLK): the kernel names their holder by a lock owner: for
// POSIX locks one per process (its table of files), for OFD locks one per open file
// description (the kernel's struct file). PosixLocks gives each owner of an inode an open file
// description of its own on the backing file and keeps its locks there as OFD locks: they
// conflict with every other owner's locks, here and on other nodes, never with the owner's
// own, which merge and split as both kinds do. Both kinds go where the kernel lets them go:
//   - a POSIX owner's at any close of a descriptor of the file by the owner (FLUSH carries the
//     owner), as POSIX says;
//   - an OFD owner's at the last close of its open file (RELEASE carries the file, not the
//     owner: an owner's locks go when every open file it locked through is released; the
//     kernel never sends FLUSH with an OFD owner).
// The owner's description is opened read-only when the caller's open file is read-only, and
// read-write when it may write: a reader's lock never makes the daemon open the file for
// writing (no ETXTBSY for a program run from the backing directory, no IN_CLOSE_WRITE for
// watchers). An owner that took read locks through a read-only file and then asks for a write
// lock through a writable one gets a read-write description, onto which its read locks move
// first (they stay held all along: nobody else can hold a write lock where the owner holds a
// read lock). F_GETLK reports a conflicting lock with l_pid 0: its holder may be on another
// node.
//
// A lock that is held elsewhere and must be waited for (F_SETLKW, F_OFD_SETLKW, flock without
// LOCK_NB) is waited for by LockWaiters: the request is held back, not a thread.

#include "diofs/unique_fd.hpp"

#include <fcntl.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace diofs {

// The byte ranges one description holds locks on, as the kernel keeps them for it: a lock
// replaces what the same description held in its range, an unlock cuts it out. Ends are
// exclusive; kToEnd stands for "to the end of the file and beyond".
class LockRanges {
public:
    static constexpr off_t kToEnd = std::numeric_limits<off_t>::max();
    struct Range {
        off_t start, end;
        short type;  // F_RDLCK or F_WRLCK
        bool operator==(const Range&) const = default;
    };
    // Records `lock` (l_whence SEEK_SET; l_len 0 = to the end; F_UNLCK cuts).
    void apply(const struct flock& lock);
    std::vector<Range> ranges() const;
    bool empty() const { return by_start_.empty(); }

private:
    void cut(off_t start, off_t end);
    std::map<off_t, Range> by_start_;
};

// The record locks of one inode, by owner.
class PosixLocks {
public:
    // Opens a new description of the backing file with `access` (O_RDONLY or O_RDWR): a
    // descriptor or -errno.
    using Open = std::function<int(int access)>;

    // Sets `lock` (F_RDLCK, F_WRLCK or F_UNLCK, SEEK_SET) for `owner` through the kernel's open
    // file `file`, whose access mode is `file_access` (O_RDONLY, O_WRONLY or O_RDWR), without
    // waiting: 0, a "held elsewhere" error (-EAGAIN), or another -errno. An unlock by an owner
    // without a description is 0 at once. A close (release_owner) meanwhile is ordered before
    // or after it, never between: a lock granted here is held by the owner's description of now.
    int set(uint64_t owner, uint64_t file, int file_access, const struct flock& lock, const Open& open);
    // F_GETLK for `owner`: `lock` becomes the first conflicting lock or has l_type F_UNLCK.
    int test(uint64_t owner, struct flock& lock, const Open& open);
    // The owner closed a descriptor of the file (FLUSH): a POSIX owner's locks go.
    // Returns whether locks went.
    bool release_owner(uint64_t owner);
    // The kernel released its open file `file` (RELEASE): the locks of every owner that took
    // them only through it go. Returns whether locks went.
    bool release_file(uint64_t file);
    // Owners with a description, for tests.
    size_t owners() const;

private:
    struct Owner {
        UniqueFd fd;
        int access;               // O_RDONLY or O_RDWR (O_WRONLY where O_RDWR was refused)
        std::set<uint64_t> files;  // the kernel's open files it locked through
        LockRanges held;
    };
    // Makes `o` able to take `type`, moving its locks to a description that can: 0 or -errno.
    static int give_access(Owner& o, short type, const Open& open);

    // Guards owners_ and each owner's description and ranges. Held across the non-blocking
    // fcntl and, the first time, the open of an owner's description (one inode's locks wait
    // for each other; never for a lock held elsewhere).
    mutable std::mutex mutex_;
    std::unordered_map<uint64_t, Owner> owners_;
};

// Requests that wait for a lock held elsewhere. A FUSE worker that waited would be lost to
// the mount meanwhile, and a thread per wait lets programs make the daemon start threads
// without end: instead the request is kept, not answered, with a function that tries the lock
// without blocking. One thread tries again:
//   - a wait's inode at once when a lock of it is let go through this mount (an unlock, a
//     close, a release: the daemon sees those), the waits in the order they came;
//   - every wait now and then, for locks held outside the mount (on another node, or by a
//     program on the backing directory: nothing tells the daemon when those go). The pause
//     starts at kFirstPause and doubles up to kLongestPause.
// A wait ends when its attempt has the lock or answers another error, when the caller is
// interrupted (a signal: EINTR), or at the end of the session (no answer). Each user may have
// kMostPerUser waits at once and all users kMostWaiting; one more is answered ENOLCK at once.
class LockWaiters {
public:
    static constexpr size_t kMostPerUser = 1024;
    static constexpr size_t kMostWaiting = 32768;
    static constexpr std::chrono::milliseconds kFirstPause{10}, kLongestPause{1000};

    // Called on the waiting thread: 0, a "still held" error (-EAGAIN, -EACCES, -EWOULDBLOCK),
    // or another -errno.
    using Attempt = std::function<int()>;
    using Done = std::function<void(int)>;
    // What the wait is known by: `key` names what may be let go (the inode), `user` is whose
    // budget it counts against, `id` tells it from the others for interrupt().
    struct Who {
        uint64_t key;
        uint32_t user;
        const void* id;
    };

    // `first` and `longest` pause between tries of a wait that nothing woke (tests shorten or
    // lengthen them).
    explicit LockWaiters(std::chrono::milliseconds first = kFirstPause,
                         std::chrono::milliseconds longest = kLongestPause);
    ~LockWaiters() { stop(); }
    LockWaiters(const LockWaiters&) = delete;
    LockWaiters& operator=(const LockWaiters&) = delete;

    // Whether `rv` from an attempt means that the lock is held elsewhere.
    static bool busy(int rv);

    // Starts the waiting thread (once the daemon runs where it will go on running: after it
    // forked into the background, BackgroundThreads::start): 0, or the errno of the failed
    // start. A wait starts it too when it has not started.
    int start();

    // Keeps `attempt` until it is not busy, then calls `done` with its result (on the waiting
    // thread); or with -ENOLCK at once, past the budget. `armed` runs before the first retry,
    // on this thread (to register for interrupts): the wait is not answered before it returns.
    void wait(Who who, Attempt attempt, Done done, const std::function<void()>& armed = {});
    // The caller of wait `id` was interrupted: it is answered -EINTR (on the waiting thread).
    void interrupt(const void* id);
    // A lock on `key` was let go through this mount: its waits try again now.
    void released(uint64_t key);
    // Ends every wait without an answer (the session and its requests are gone) and the thread.
    void stop();
    // Waits kept now, for tests and the stats.
    size_t waiting() const;

private:
    struct Waiter {
        Who who;
        Attempt attempt;
        Done done;
        bool armed = false;
        bool interrupted = false;
        std::chrono::steady_clock::time_point next;
        std::chrono::milliseconds pause{};
    };
    void run();
    int start_locked();

    mutable std::mutex mutex_;  // guards all below
    std::condition_variable wake_;
    std::list<Waiter> waiters_;  // in the order they came
    std::unordered_map<uint32_t, size_t> per_user_;  // waits by user
    std::unordered_map<uint64_t, size_t> per_key_;   // waits by key
    std::unordered_set<uint64_t> woken_;             // keys let go since the last pass
    const std::chrono::milliseconds first_pause_, longest_pause_;
    bool stopping_ = false;
    bool warned_ = false;            // of ENOLCK past the budget, logged once
    bool warned_no_thread_ = false;  // of ENOLCK for want of the thread, logged once
    std::thread thread_;  // started by start() or the first wait
};

}  // namespace diofs

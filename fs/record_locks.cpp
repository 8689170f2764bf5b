#include "diofs/record_locks.hpp"

#include "diofs/syscalls.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

namespace diofs {
namespace {

// The lock as an open file description takes it: l_pid must be 0.
struct flock as_ofd(const struct flock& lock) {
    struct flock l = lock;
    l.l_pid = 0;
    return l;
}

bool can_read(int access) { return access != O_WRONLY; }
bool can_write(int access) { return access != O_RDONLY; }

}  // namespace

void LockRanges::cut(off_t start, off_t end) {
    auto it = by_start_.upper_bound(start);
    if (it != by_start_.begin() && std::prev(it)->second.end > start)
        --it;
    while (it != by_start_.end() && it->second.start < end) {
        const Range r = it->second;
        it = by_start_.erase(it);
        if (r.start < start)
            by_start_.emplace(r.start, Range{r.start, start, r.type});
        if (r.end > end)
            it = by_start_.emplace(end, Range{end, r.end, r.type}).first;
    }
}

void LockRanges::apply(const struct flock& lock) {
    const off_t start = lock.l_start;
    const off_t end = lock.l_len == 0 || lock.l_len > kToEnd - start ? kToEnd : start + lock.l_len;
    cut(start, end);
    if (lock.l_type != F_UNLCK)
        by_start_.emplace(start, Range{start, end, lock.l_type});
}

std::vector<LockRanges::Range> LockRanges::ranges() const {
    std::vector<Range> all;
    for (const auto& [start, r] : by_start_)
        all.push_back(r);
    return all;
}

int PosixLocks::give_access(Owner& o, short type, const Open& open) {
    if (type == F_UNLCK || (type == F_RDLCK ? can_read(o.access) : can_write(o.access)))
        return 0;
    // Through a file of the other kind than before: the owner has shown both accesses.
    const int fd = open(O_RDWR);
    if (fd < 0)
        return fd;
    UniqueFd both(fd);
    for (const LockRanges::Range& r : o.held.ranges()) {
        struct flock l{};
        l.l_type = r.type;
        l.l_whence = SEEK_SET;
        l.l_start = r.start;
        l.l_len = r.end == LockRanges::kToEnd ? 0 : r.end - r.start;
        if (int rv = sys::fcntl_lock(both.get(), F_OFD_SETLK, &l); rv < 0)
            return rv;  // the old description keeps them all
    }
    o.fd = std::move(both);  // the old one closes: its locks are the new one's already
    o.access = O_RDWR;
    return 0;
}

int PosixLocks::set(uint64_t owner, uint64_t file, int file_access, const struct flock& lock,
                    const Open& open) {
    std::lock_guard guard(mutex_);
    auto it = owners_.find(owner);
    if (it == owners_.end()) {
        if (lock.l_type == F_UNLCK)
            return 0;  // the owner holds nothing here
        // Read-only as the caller's file is; read-write where it may write (an owner that
        // locks through a write-only file may later take a read lock through another).
        int access = can_write(file_access) ? O_RDWR : O_RDONLY;
        int fd = open(access);
        if (fd < 0 && access != file_access && fd != -ENOENT) {
            access = file_access;
            fd = open(access);
        }
        if (fd < 0)
            return fd;
        it = owners_.emplace(owner, Owner{UniqueFd(fd), access, {}, {}}).first;
    }
    Owner& o = it->second;
    // Registered whether or not the lock is had now: a wait tries again through it.
    o.files.insert(file);
    if (int rv = give_access(o, lock.l_type, open); rv < 0)
        return rv;
    struct flock l = as_ofd(lock);
    const int rv = sys::fcntl_lock(o.fd.get(), F_OFD_SETLK, &l);
    if (rv == 0)
        o.held.apply(lock);
    return rv;
}

int PosixLocks::test(uint64_t owner, struct flock& lock, const Open& open) {
    std::lock_guard guard(mutex_);
    UniqueFd probe;
    int fd;
    if (auto it = owners_.find(owner); it != owners_.end()) {
        fd = it->second.fd.get();  // the owner's own locks are no conflict
    } else {
        fd = open(O_RDONLY);  // F_OFD_GETLK asks for no access: the least there is
        if (fd < 0)
            return fd;
        probe.reset(fd);
    }
    struct flock l = as_ofd(lock);
    if (int rv = sys::fcntl_lock(fd, F_OFD_GETLK, &l); rv < 0)
        return rv;
    l.l_pid = 0;  // the holder may be on another node (OFD locks say -1)
    lock = l;
    return 0;
}

bool PosixLocks::release_owner(uint64_t owner) {
    UniqueFd gone;  // closed, and its locks released, after the mutex
    std::lock_guard guard(mutex_);
    auto it = owners_.find(owner);
    if (it == owners_.end())
        return false;
    gone = std::move(it->second.fd);
    owners_.erase(it);
    return true;
}

bool PosixLocks::release_file(uint64_t file) {
    std::vector<UniqueFd> gone;  // closed after the mutex
    std::lock_guard guard(mutex_);
    for (auto it = owners_.begin(); it != owners_.end();) {
        if (it->second.files.erase(file) && it->second.files.empty()) {
            gone.push_back(std::move(it->second.fd));
            it = owners_.erase(it);
        } else {
            ++it;
        }
    }
    return !gone.empty();
}

size_t PosixLocks::owners() const {
    std::lock_guard guard(mutex_);
    return owners_.size();
}

bool LockWaiters::busy(int rv) { return rv == -EAGAIN || rv == -EACCES || rv == -EWOULDBLOCK; }

LockWaiters::LockWaiters(std::chrono::milliseconds first, std::chrono::milliseconds longest)
    : first_pause_(first), longest_pause_(longest) {}

void LockWaiters::wait(Who who, Attempt attempt, Done done, const std::function<void()>& armed) {
    std::list<Waiter>::iterator it;
    {
        std::unique_lock lock(mutex_);
        if (stopping_)
            return;
        const auto user = per_user_.find(who.user);
        const size_t mine = user == per_user_.end() ? 0 : user->second;
        // A wait refused: nothing is kept; `warned` says whether this refusal's kind was logged.
        auto refuse = [&](bool& warned, auto log) {
            const bool first = !std::exchange(warned, true);
            lock.unlock();
            if (first)
                log();
            done(-ENOLCK);
        };
        if (mine >= kMostPerUser || waiters_.size() >= kMostWaiting) {
            const size_t all = waiters_.size();
            return refuse(warned_, [&] {
                spdlog::warn("lock waits refused with ENOLCK: user {} waits for {} locks (at most "
                             "{} each), all users for {} (at most {}); logged once",
                             who.user, mine, kMostPerUser, all, kMostWaiting);
            });
        }
        // Started by start(), or here (unit tests; or start() could not): never before the
        // daemon has forked into the background, which would leave it behind in the parent.
        // When it cannot start, nothing is kept: the next wait tries again.
        if (!thread_.joinable()) {
            if (const int error = start_locked(); error != 0)
                return refuse(warned_no_thread_, [&] {
                    spdlog::error("lock waits refused with ENOLCK: cannot start the thread that "
                                  "waits for locks ({}); logged once",
                                  std::strerror(error));
                });
        }
        ++per_user_[who.user];
        ++per_key_[who.key];
        it = waiters_.emplace(waiters_.end());
        it->who = who;
        it->attempt = std::move(attempt);
        it->done = std::move(done);
        it->pause = first_pause_;
    }
    if (armed)
        armed();
    {
        std::lock_guard lock(mutex_);
        it->armed = true;
        it->next = std::chrono::steady_clock::now();
    }
    wake_.notify_one();
}

int LockWaiters::start() {
    std::lock_guard lock(mutex_);
    return thread_.joinable() ? 0 : start_locked();
}

int LockWaiters::start_locked() {
    try {
        thread_ = std::thread([this] { run(); });
        return 0;
    } catch (const std::system_error& e) {
        return e.code().value() ? e.code().value() : EAGAIN;
    }
}

void LockWaiters::interrupt(const void* id) {
    {
        std::lock_guard lock(mutex_);
        auto it = std::find_if(waiters_.begin(), waiters_.end(),
                               [id](const Waiter& w) { return w.who.id == id; });
        if (it == waiters_.end())
            return;  // answered already
        it->interrupted = true;
    }
    wake_.notify_one();
}

void LockWaiters::released(uint64_t key) {
    {
        std::lock_guard lock(mutex_);
        if (!per_key_.count(key))
            return;  // nobody waits for it: the usual case, and cheap
        woken_.insert(key);
    }
    wake_.notify_one();
}

void LockWaiters::run() {
    using Clock = std::chrono::steady_clock;
    struct Due {
        std::list<Waiter>::iterator waiter;
        bool interrupted;
        int rv = 0;
    };
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        // Waits a little ahead of their time go along: one pass serves them all.
        const auto now = Clock::now(), soon = now + std::chrono::milliseconds(2);
        auto earliest = Clock::time_point::max();
        std::vector<Due> due;
        for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
            if (!it->armed)
                continue;
            if (it->interrupted || it->next <= soon || woken_.count(it->who.key))
                due.push_back({it, it->interrupted});
            else
                earliest = std::min(earliest, it->next);
        }
        woken_.clear();
        if (due.empty()) {
            if (earliest == Clock::time_point::max())
                wake_.wait(lock);
            else
                wake_.wait_until(lock, earliest);
            continue;
        }
        // Only this thread removes waiters, and an armed waiter's attempt does not change: it
        // runs without the lock, so that wait(), released() and interrupt() never wait for it.
        lock.unlock();
        for (Due& d : due)
            d.rv = d.interrupted ? -EINTR : d.waiter->attempt();
        lock.lock();
        std::vector<Done> answers;
        std::vector<int> results;
        for (Due& d : due) {
            Waiter& w = *d.waiter;
            if (busy(d.rv)) {
                w.next = Clock::now() + w.pause;
                w.pause = std::min(w.pause * 2, longest_pause_);
                continue;
            }
            answers.push_back(std::move(w.done));
            results.push_back(d.rv);
            if (--per_user_[w.who.user] == 0)
                per_user_.erase(w.who.user);
            if (--per_key_[w.who.key] == 0)
                per_key_.erase(w.who.key);
            waiters_.erase(d.waiter);
        }
        if (answers.empty())
            continue;
        lock.unlock();
        for (size_t i = 0; i < answers.size(); ++i)
            answers[i](results[i]);
        lock.lock();
    }
}

void LockWaiters::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable())
        thread_.join();
}

size_t LockWaiters::waiting() const {
    std::lock_guard lock(mutex_);
    return waiters_.size();
}

}  // namespace diofs

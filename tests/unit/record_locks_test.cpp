// LockRanges (what one description holds), PosixLocks (one description of the backing file per
// lock owner) and LockWaiters (the requests held back until a lock is free), without a mount:
// a temporary file stands for the backing file, and attempts are counted functions.

#include "diofs/record_locks.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <future>
#include <mutex>
#include <string>
#include <thread>

namespace diofs {
namespace {

using namespace std::chrono_literals;
using Range = LockRanges::Range;

struct flock lock_of(short type, off_t start, off_t len) {
    struct flock l{};
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = start;
    l.l_len = len;
    return l;
}

TEST(LockRanges, ALockReplacesWhatItCoversAndAnUnlockCutsIt) {
    LockRanges held;
    held.apply(lock_of(F_RDLCK, 0, 100));
    held.apply(lock_of(F_WRLCK, 40, 20));
    EXPECT_EQ(held.ranges(), (std::vector<Range>{{0, 40, F_RDLCK}, {40, 60, F_WRLCK}, {60, 100, F_RDLCK}}));
    held.apply(lock_of(F_UNLCK, 50, 0));  // to the end
    EXPECT_EQ(held.ranges(), (std::vector<Range>{{0, 40, F_RDLCK}, {40, 50, F_WRLCK}}));
    held.apply(lock_of(F_WRLCK, 200, 0));
    held.apply(lock_of(F_RDLCK, 30, 200));
    EXPECT_EQ(held.ranges(),
              (std::vector<Range>{{0, 30, F_RDLCK}, {30, 230, F_RDLCK}, {230, LockRanges::kToEnd, F_WRLCK}}));
    held.apply(lock_of(F_UNLCK, 0, 0));
    EXPECT_TRUE(held.empty());
}

// A file of its own for each test, removed at the end.
class PosixLocksTest : public ::testing::Test {
protected:
    void SetUp() override {
        const char* tmp = std::getenv("TMPDIR");
        path_ = std::string(tmp && *tmp ? tmp : "/tmp") + "/diofs-locks-XXXXXX";
        const int fd = ::mkstemp(path_.data());
        ASSERT_GE(fd, 0);
        ::close(fd);
    }
    void TearDown() override { ::unlink(path_.c_str()); }

    // Counts the opens and remembers the access of each.
    PosixLocks::Open open() {
        return [this](int access) {
            accesses_.push_back(access);
            const int fd = ::open(path_.c_str(), access | O_CLOEXEC);
            return fd < 0 ? -errno : fd;
        };
    }
    // Whether a description of another owner could take `type` on [start, start + len).
    bool free_for_others(short type, off_t start, off_t len) {
        const int fd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
        struct flock l = lock_of(type, start, len);
        const bool ok = ::fcntl(fd, F_OFD_GETLK, &l) == 0 && l.l_type == F_UNLCK;
        ::close(fd);
        return ok;
    }

    std::string path_;
    std::vector<int> accesses_;
    PosixLocks locks_;
};

TEST_F(PosixLocksTest, EachOwnerHasOneDescriptionAndOwnersConflict) {
    EXPECT_EQ(locks_.set(7, 1, O_RDWR, lock_of(F_WRLCK, 0, 10), open()), 0);
    EXPECT_EQ(locks_.set(7, 2, O_RDWR, lock_of(F_WRLCK, 5, 10), open()), 0) << "an owner conflicted with itself";
    EXPECT_EQ(locks_.set(8, 3, O_RDWR, lock_of(F_RDLCK, 12, 1), open()), -EAGAIN);
    EXPECT_EQ(locks_.owners(), 2u);
    EXPECT_EQ(accesses_.size(), 2u) << "one description per owner";
    struct flock probe = lock_of(F_WRLCK, 0, 0);
    EXPECT_EQ(locks_.test(8, probe, open()), 0);
    EXPECT_EQ(probe.l_type, F_WRLCK);
    EXPECT_EQ(probe.l_start, 0);
    EXPECT_EQ(probe.l_len, 15);
    EXPECT_EQ(probe.l_pid, 0);
    probe = lock_of(F_WRLCK, 0, 0);
    EXPECT_EQ(locks_.test(7, probe, open()), 0);
    EXPECT_EQ(probe.l_type, F_UNLCK) << "an owner's own locks reported as a conflict";
    // An unlock by an owner with no description: nothing to open.
    const size_t opens = accesses_.size();
    EXPECT_EQ(locks_.set(99, 4, O_RDWR, lock_of(F_UNLCK, 0, 0), open()), 0);
    EXPECT_EQ(accesses_.size(), opens);
}

// FLUSH ends a POSIX owner's locks; RELEASE ends those of an owner that locked only through
// the released file (an OFD owner), not those of an owner that locked through another too.
TEST_F(PosixLocksTest, AnOwnerGoesAtItsCloseOrWithTheLastFileItLockedThrough) {
    ASSERT_EQ(locks_.set(7, 1, O_RDWR, lock_of(F_WRLCK, 0, 10), open()), 0);
    EXPECT_TRUE(locks_.release_owner(7));
    EXPECT_FALSE(locks_.release_owner(7));
    EXPECT_TRUE(free_for_others(F_WRLCK, 0, 0));

    ASSERT_EQ(locks_.set(8, 2, O_RDWR, lock_of(F_WRLCK, 0, 10), open()), 0);
    ASSERT_EQ(locks_.set(9, 3, O_RDWR, lock_of(F_WRLCK, 20, 10), open()), 0);
    ASSERT_EQ(locks_.set(9, 4, O_RDWR, lock_of(F_WRLCK, 40, 10), open()), 0);
    EXPECT_TRUE(locks_.release_file(2));
    EXPECT_TRUE(free_for_others(F_WRLCK, 0, 10));
    EXPECT_FALSE(locks_.release_file(3)) << "owner 9 still has file 4";
    EXPECT_FALSE(free_for_others(F_WRLCK, 20, 1));
    EXPECT_TRUE(locks_.release_file(4));
    EXPECT_TRUE(free_for_others(F_WRLCK, 0, 0));
    EXPECT_EQ(locks_.owners(), 0u);
}

// A reader's description is read-only; its read locks move, held all along, to a read-write
// one when the owner asks for a write lock through a writable file.
TEST_F(PosixLocksTest, AReaderIsOpenedReadOnlyAndMovesToReadWriteForAWriteLock) {
    ASSERT_EQ(locks_.set(7, 1, O_RDONLY, lock_of(F_RDLCK, 0, 10), open()), 0);
    ASSERT_EQ(locks_.set(7, 1, O_RDONLY, lock_of(F_RDLCK, 100, 0), open()), 0);
    EXPECT_EQ(accesses_, std::vector<int>{O_RDONLY});
    ASSERT_EQ(locks_.set(7, 2, O_RDWR, lock_of(F_WRLCK, 50, 10), open()), 0);
    EXPECT_EQ(accesses_, (std::vector<int>{O_RDONLY, O_RDWR}));
    EXPECT_FALSE(free_for_others(F_WRLCK, 5, 1)) << "a read lock lost in the move";
    EXPECT_TRUE(free_for_others(F_RDLCK, 5, 1));
    EXPECT_FALSE(free_for_others(F_WRLCK, 1000, 1));
    EXPECT_FALSE(free_for_others(F_RDLCK, 55, 1)) << "the write lock is not held";
    EXPECT_TRUE(free_for_others(F_WRLCK, 20, 10));
    // A writer's description is read-write from the start: no second move.
    ASSERT_EQ(locks_.set(8, 3, O_WRONLY, lock_of(F_WRLCK, 20, 10), open()), 0);
    ASSERT_EQ(locks_.set(8, 4, O_RDONLY, lock_of(F_RDLCK, 30, 5), open()), 0);
    EXPECT_EQ(accesses_, (std::vector<int>{O_RDONLY, O_RDWR, O_RDWR}));
}

TEST_F(PosixLocksTest, AnOpenThatFailsIsTheAnswer) {
    EXPECT_EQ(locks_.set(9, 1, O_RDWR, lock_of(F_WRLCK, 0, 1), [](int) { return -EACCES; }), -EACCES);
    EXPECT_EQ(locks_.owners(), 0u);
}

// Waits for one user (0) unless the test says otherwise.
LockWaiters::Who who(const void* id, uint64_t key = 1, uint32_t user = 0) { return {key, user, id}; }

TEST(LockWaiters, WaitsUntilTheLockIsFreeThenAnswersOnce) {
    LockWaiters waiters;
    std::atomic<int> attempts = 0;
    std::atomic<bool> free = false;
    std::promise<int> answer;
    int id;
    waiters.wait(who(&id), [&] { return ++attempts, free ? 0 : -EAGAIN; },
                 [&](int rv) { answer.set_value(rv); });
    auto result = answer.get_future();
    EXPECT_EQ(result.wait_for(100ms), std::future_status::timeout);
    EXPECT_EQ(waiters.waiting(), 1u);
    free = true;
    ASSERT_EQ(result.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(result.get(), 0);
    EXPECT_GT(attempts.load(), 1);
    EXPECT_EQ(waiters.waiting(), 0u);
}

// A release of the key tries its waits at once, in the order they came, however long their
// pause: here an hour after the first try.
TEST(LockWaiters, AReleaseTriesTheKeysWaitsAtOnceInTheirOrder) {
    LockWaiters waiters(std::chrono::hours(1), std::chrono::hours(1));
    std::atomic<bool> free = false;
    std::atomic<int> attempts = 0;
    std::mutex order_mutex;
    std::vector<int> order;
    std::promise<void> all;
    int ids[3];
    for (int i = 0; i < 3; ++i)
        waiters.wait(who(&ids[i], 5), [&] { return ++attempts, free ? 0 : -EAGAIN; }, [&, i](int rv) {
            std::lock_guard lock(order_mutex);
            order.push_back(rv == 0 ? i : -1);
            if (order.size() == 3)
                all.set_value();
        });
    auto done = all.get_future();
    for (int i = 0; i < 500 && attempts < 3; ++i)
        std::this_thread::sleep_for(10ms);
    ASSERT_EQ(attempts.load(), 3) << "each wait is tried once when it starts";
    free = true;
    waiters.released(4);  // another key: nothing
    EXPECT_EQ(done.wait_for(200ms), std::future_status::timeout);
    waiters.released(5);
    ASSERT_EQ(done.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(attempts.load(), 6);
}

TEST(LockWaiters, AnotherErrorEndsTheWait) {
    LockWaiters waiters;
    std::promise<int> answer;
    int id;
    waiters.wait(who(&id), [] { return -ENOLCK; }, [&](int rv) { answer.set_value(rv); });
    EXPECT_EQ(answer.get_future().get(), -ENOLCK);
}

TEST(LockWaiters, AnInterruptedCallerGetsEintr) {
    LockWaiters waiters;
    std::promise<int> answer;
    int id, other;
    waiters.wait(who(&id), [] { return -EWOULDBLOCK; }, [&](int rv) { answer.set_value(rv); });
    auto result = answer.get_future();
    EXPECT_EQ(result.wait_for(50ms), std::future_status::timeout);
    waiters.interrupt(&other);  // not this one
    EXPECT_EQ(result.wait_for(50ms), std::future_status::timeout);
    waiters.interrupt(&id);
    ASSERT_EQ(result.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(result.get(), -EINTR);
}

// The interrupt may come while the wait is being armed (fuse_req_interrupt_func calls back at
// once when the caller was interrupted before): it is not lost.
TEST(LockWaiters, AnInterruptWhileArmingIsNotLost) {
    LockWaiters waiters;
    std::promise<int> answer;
    int id;
    waiters.wait(who(&id), [] { return -EAGAIN; }, [&](int rv) { answer.set_value(rv); },
                 [&] { waiters.interrupt(&id); });
    auto result = answer.get_future();
    ASSERT_EQ(result.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(result.get(), -EINTR);
}

// Each user may have kMostPerUser waits: one more is ENOLCK at once, and another user still
// waits. No thread is started per wait.
TEST(LockWaiters, OneUserCannotTakeTheWholeBudget) {
    LockWaiters waiters;
    std::atomic<bool> free = false;
    std::atomic<size_t> granted = 0;
    std::vector<int> ids(LockWaiters::kMostPerUser + 1);
    for (size_t i = 0; i < LockWaiters::kMostPerUser; ++i)
        waiters.wait(who(&ids[i], 1, 1000), [&] { return free ? 0 : -EAGAIN; }, [&](int rv) {
            if (rv == 0)
                ++granted;
        });
    std::promise<int> refused;
    waiters.wait(who(&ids.back(), 1, 1000), [] { return 0; }, [&](int rv) { refused.set_value(rv); });
    auto result = refused.get_future();
    ASSERT_EQ(result.wait_for(0s), std::future_status::ready) << "answered later";
    EXPECT_EQ(result.get(), -ENOLCK);

    std::promise<int> other;
    int other_id;
    waiters.wait(who(&other_id, 1, 1001), [&] { return free ? 0 : -EAGAIN; },
                 [&](int rv) { other.set_value(rv); });
    auto other_result = other.get_future();
    EXPECT_EQ(other_result.wait_for(50ms), std::future_status::timeout) << "another user was refused";
    EXPECT_EQ(waiters.waiting(), LockWaiters::kMostPerUser + 1);
    free = true;
    waiters.released(1);
    ASSERT_EQ(other_result.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(other_result.get(), 0);
    for (int i = 0; i < 500 && granted < LockWaiters::kMostPerUser; ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(granted.load(), LockWaiters::kMostPerUser);
    EXPECT_EQ(waiters.waiting(), 0u);
}

// At the end of the session the waits end without an answer, and later ones never start.
TEST(LockWaiters, StopEndsTheWaitsWithoutAnswering) {
    LockWaiters waiters;
    std::atomic<int> answers = 0;
    int ids[4];
    for (int i = 0; i < 3; ++i)
        waiters.wait(who(&ids[i]), [] { return -EACCES; }, [&](int) { ++answers; });
    std::this_thread::sleep_for(20ms);
    waiters.stop();
    waiters.wait(who(&ids[3]), [] { return 0; }, [&](int) { ++answers; });
    EXPECT_EQ(answers.load(), 0);
}

}  // namespace
}  // namespace diofs

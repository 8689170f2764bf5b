// PosixLocks (one description of the backing file per lock owner) and LockWaiters (the threads
// that wait for a lock held elsewhere), without a mount: descriptors of /dev/null stand for the
// backing file's descriptions, and attempts are counted functions.

#include "diofs/locks.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <thread>

namespace diofs {
namespace {

using namespace std::chrono_literals;

int open_null() { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }

TEST(PosixLocks, EachOwnerGetsOneDescriptionUntilItCloses) {
    PosixLocks locks;
    int opens = 0;
    auto open = [&] {
        ++opens;
        return open_null();
    };
    int error = 0;
    PosixLocks::Descriptor first = locks.of(7, open, error);
    ASSERT_TRUE(first);
    EXPECT_EQ(error, 0);
    EXPECT_EQ(locks.of(7, open, error), first) << "a second description for the same owner";
    PosixLocks::Descriptor other = locks.of(8, open, error);
    EXPECT_NE(other, first);
    EXPECT_EQ(opens, 2);
    EXPECT_EQ(locks.owners(), 2u);

    // The owner closed: its entry goes; a request still using the description keeps it open.
    const int fd = first->get();
    locks.release(7);
    EXPECT_EQ(locks.find(7), nullptr);
    EXPECT_GE(::fcntl(fd, F_GETFD), 0) << "closed while still in use";
    first.reset();
    EXPECT_EQ(locks.owners(), 1u);
    locks.release(99);  // an owner that never locked: nothing happens

    // An open that fails: no entry, the error.
    EXPECT_EQ(locks.of(9, [] { return -EACCES; }, error), nullptr);
    EXPECT_EQ(error, -EACCES);
    EXPECT_EQ(locks.find(9), nullptr);
}

TEST(LockWaiters, WaitsUntilTheLockIsFreeThenAnswersOnce) {
    LockWaiters waiters;
    std::atomic<int> attempts = 0;
    std::atomic<bool> free = false;
    std::promise<int> answer;
    waiters.wait([&] { return ++attempts, free ? 0 : -EAGAIN; }, [] { return false; },
                 [&](int rv) { answer.set_value(rv); });
    auto result = answer.get_future();
    EXPECT_EQ(result.wait_for(100ms), std::future_status::timeout);
    EXPECT_EQ(waiters.waiting(), 1u);
    free = true;
    ASSERT_EQ(result.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(result.get(), 0);
    EXPECT_GT(attempts.load(), 2);
}

TEST(LockWaiters, AnotherErrorEndsTheWait) {
    LockWaiters waiters;
    std::promise<int> answer;
    waiters.wait([] { return -ENOLCK; }, [] { return false; }, [&](int rv) { answer.set_value(rv); });
    EXPECT_EQ(answer.get_future().get(), -ENOLCK);
}

TEST(LockWaiters, AnInterruptedCallerGetsEintr) {
    LockWaiters waiters;
    std::atomic<bool> interrupted = false;
    std::promise<int> answer;
    waiters.wait([] { return -EWOULDBLOCK; }, [&] { return interrupted.load(); },
                 [&](int rv) { answer.set_value(rv); });
    auto result = answer.get_future();
    EXPECT_EQ(result.wait_for(50ms), std::future_status::timeout);
    interrupted = true;
    ASSERT_EQ(result.wait_for(5s), std::future_status::ready);
    EXPECT_EQ(result.get(), -EINTR);
}

// Past kMostWaiting waits at once, one more is answered ENOLCK without a thread.
TEST(LockWaiters, TooManyWaitsAreRefusedWithEnolck) {
    LockWaiters waiters;
    std::atomic<bool> free = false;
    std::atomic<int> granted = 0;
    for (size_t i = 0; i < LockWaiters::kMostWaiting; ++i)
        waiters.wait([&] { return free ? 0 : -EAGAIN; }, [] { return false; }, [&](int rv) {
            if (rv == 0)
                ++granted;
        });
    std::promise<int> refused;
    waiters.wait([] { return 0; }, [] { return false; }, [&](int rv) { refused.set_value(rv); });
    auto result = refused.get_future();
    ASSERT_EQ(result.wait_for(0s), std::future_status::ready) << "answered later, on a thread";
    EXPECT_EQ(result.get(), -ENOLCK);
    free = true;
    for (int i = 0; i < 500 && granted < static_cast<int>(LockWaiters::kMostWaiting); ++i)
        std::this_thread::sleep_for(10ms);
    EXPECT_EQ(granted.load(), static_cast<int>(LockWaiters::kMostWaiting));
}

// At the end of the session the waits end without an answer, and later ones never start.
TEST(LockWaiters, StopEndsTheWaitsWithoutAnswering) {
    LockWaiters waiters;
    std::atomic<int> answers = 0;
    for (int i = 0; i < 3; ++i)
        waiters.wait([] { return -EACCES; }, [] { return false; }, [&](int) { ++answers; });
    std::this_thread::sleep_for(20ms);
    waiters.stop();
    EXPECT_EQ(waiters.waiting(), 0u);
    waiters.wait([] { return 0; }, [] { return false; }, [&](int) { ++answers; });
    EXPECT_EQ(answers.load(), 0);
}

}  // namespace
}  // namespace diofs

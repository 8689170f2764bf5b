// Two diofs mounts of one backing directory, standing for two nodes of a cluster filesystem
// (tests/cluster runs the same over GlusterFS).
//
// Close-to-open: a file changed through one mount (grown, rewritten, cut) is read whole and
// current by the next open through the other, at once, whatever the other read of it before
// and whatever size the kernel cached for it; with entry_timeout=0 also a file replaced by a
// rename, removed or made again; under strict, a write that returned on one is seen by a read
// on the other that starts after it, through descriptors open all along.
//
// Locks reach the backing filesystem. A flock() or a
// POSIX record lock taken through one mount blocks the same lock through the other, and
// through the backing directory itself; it goes when its holder unlocks, closes or dies (a
// flock() just after the close, when the kernel releases the file). A
// lock that must be waited for is waited for without holding a daemon thread (the mount
// answers while three waits are under way), and a signal interrupts the wait (EINTR).
// Between processes of one mount, POSIX locks keep their per-process semantics: one process's
// locks through two descriptors merge, and closing either releases them.

#include "lock_support.hpp"
#include "mount_fixture.hpp"
#include "test_support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace diofs_test {
namespace {

using namespace std::chrono_literals;

// Two mounts, "A" and "B", of one backing directory, with the same options.
class TwoMounts : public ::testing::TestWithParam<std::vector<std::string>> {
protected:
    void SetUp() override {
        DIOFS_REQUIRE_FUSE();
        a_ = std::make_unique<DiofsMount>(GetParam());
        ASSERT_EQ(a_->start(), "");
        b_ = std::make_unique<DiofsMount>(GetParam());
        b_->use_directories(a_->backing());
        ASSERT_EQ(b_->start(), "");
        ASSERT_EQ(write_whole(a_->backing() + "/f", std::string(4096, 'x')), 0);
    }
    void TearDown() override {
        if (b_) {
            EXPECT_EQ(b_->stop(), "");
        }
        if (a_) {
            EXPECT_EQ(a_->stop(), "");
        }
    }
    Fd open_a(int flags = O_RDWR) { return Fd(::open((a_->mnt() + "/f").c_str(), flags | O_CLOEXEC)); }
    Fd open_b(int flags = O_RDWR) { return Fd(::open((b_->mnt() + "/f").c_str(), flags | O_CLOEXEC)); }

    std::unique_ptr<DiofsMount> a_, b_;
};

class CloseToOpen : public TwoMounts {};
class Names : public TwoMounts {};

// entry_timeout=0: B asks for a name at every path walk, so a file replaced by a rename on A,
// removed or made again there, is what the next open on B finds, at once.
TEST_P(Names, WithEntryTimeoutZeroAnOpenFindsWhatTheNameIsNow) {
    const std::string on_a = a_->mnt() + "/f", on_b = b_->mnt() + "/f";
    ASSERT_EQ(read_whole(on_b), std::string(4096, 'x'));  // B knows the name and the inode
    ASSERT_EQ(write_whole(a_->mnt() + "/f.new", std::string(3000, 'n')), 0);
    ASSERT_EQ(::rename((a_->mnt() + "/f.new").c_str(), on_a.c_str()), 0) << errno_name(errno);
    EXPECT_EQ(read_whole(on_b), std::string(3000, 'n')) << "the old file, replaced on A";
    ASSERT_EQ(::unlink(on_a.c_str()), 0);
    struct stat st{};
    EXPECT_EQ(capture([&] { return ::stat(on_b.c_str(), &st); }), failure(ENOENT));
    EXPECT_EQ(capture([&] { return ::open(on_b.c_str(), O_RDONLY | O_CLOEXEC); }), failure(ENOENT));
    ASSERT_EQ(write_whole(on_a, std::string(10, 'a')), 0);
    EXPECT_EQ(read_whole(on_b), std::string(10, 'a')) << "made again on A";
}
class Locks : public TwoMounts {};

TEST_P(CloseToOpen, AFileChangedOnOneMountIsReadWholeByTheNextOpenOnTheOther) {
    const std::string on_a = a_->mnt() + "/f", on_b = b_->mnt() + "/f";
    std::string want(4096, 'x');
    ASSERT_EQ(read_whole(on_b), want);  // B caches the size, and under dbopt pages of it
    struct stat st{};
    ASSERT_EQ(::stat(on_b.c_str(), &st), 0);

    // Grown on A: B's next open reads past the size it had cached.
    {
        Fd a(::open(on_a.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        ASSERT_TRUE(a) << errno_name(errno);
        ASSERT_EQ(::write(a.get(), std::string(8192, 'y').data(), 8192), 8192);
        ASSERT_EQ(a.close(), success());
    }
    want += std::string(8192, 'y');
    EXPECT_EQ(read_whole(on_b), want) << "after A appended";

    // Rewritten in place (same size, same second): B's next open reads the new bytes.
    {
        Fd a(::open(on_a.c_str(), O_WRONLY | O_CLOEXEC));
        ASSERT_TRUE(a);
        ASSERT_EQ(::pwrite(a.get(), std::string(100, 'z').data(), 100, 5000), 100);
        ASSERT_EQ(a.close(), success());
    }
    want.replace(5000, 100, std::string(100, 'z'));
    EXPECT_EQ(read_whole(on_b), want) << "after A rewrote a range";

    // Cut and rewritten shorter.
    ASSERT_EQ(write_whole(on_a, std::string(1000, 'w')), 0);
    EXPECT_EQ(read_whole(on_b), std::string(1000, 'w')) << "after A rewrote it shorter";
    ASSERT_EQ(::stat(on_b.c_str(), &st), 0);
}

// strict: every write is on the backing file when it returns and every read comes from it, so
// B sees what A wrote through descriptors that both had open before.
class StrictCoherence : public TwoMounts {};

TEST_P(StrictCoherence, AReturnedWriteIsSeenByALaterReadOnTheOther) {    Fd a(::open((a_->mnt() + "/f").c_str(), O_RDWR | O_CLOEXEC));
    Fd b(::open((b_->mnt() + "/f").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(a && b);
    std::string got(4096, '\0');
    ASSERT_EQ(::pread(b.get(), got.data(), got.size(), 0), 4096);
    for (int round = 0; round < 20; ++round) {
        const std::string bytes(512, static_cast<char>('a' + round));
        const off_t at = 512 * round;
        ASSERT_EQ(::pwrite(a.get(), bytes.data(), bytes.size(), at), 512);
        std::string seen(512, '\0');
        ASSERT_EQ(::pread(b.get(), seen.data(), seen.size(), at), 512) << "round " << round;
        EXPECT_EQ(seen, bytes) << "round " << round;
    }
}

TEST_P(Locks, FlockOnOneMountBlocksTheOtherAndTheBackingUntilUnlockOrClose) {
    Fd a = open_a(), b = open_b();
    ASSERT_TRUE(a && b) << errno_name(errno);
    ASSERT_EQ(::flock(a.get(), LOCK_EX | LOCK_NB), 0) << errno_name(errno);
    EXPECT_EQ(::flock(b.get(), LOCK_EX | LOCK_NB), -1);
    EXPECT_EQ(errno, EWOULDBLOCK);
    EXPECT_EQ(::flock(b.get(), LOCK_SH | LOCK_NB), -1) << "a shared lock beside an exclusive one";
    Fd raw(::open((a_->backing() + "/f").c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_EQ(::flock(raw.get(), LOCK_SH | LOCK_NB), -1) << "the lock did not reach the backing file";
    ASSERT_EQ(::flock(a.get(), LOCK_UN), 0);
    EXPECT_EQ(::flock(b.get(), LOCK_EX | LOCK_NB), 0) << errno_name(errno);
    ASSERT_EQ(::flock(b.get(), LOCK_UN), 0);

    // Two shared locks live side by side; a close lets the other side have it exclusively.
    ASSERT_EQ(::flock(a.get(), LOCK_SH | LOCK_NB), 0);
    EXPECT_EQ(::flock(b.get(), LOCK_SH | LOCK_NB), 0) << errno_name(errno);
    ASSERT_EQ(::flock(b.get(), LOCK_UN), 0);
    EXPECT_EQ(a.close(), success());
    EXPECT_EQ(flock_soon(b.get(), LOCK_EX), 0) << "still locked 5 s after the holder's close";
}

// Three blocking flock()s wait on B while A holds the lock (more than the daemon's two worker
// threads): B still answers other requests, and each wait ends once A unlocks.
TEST_P(Locks, BlockingFlocksWaitWithoutHoldingTheDaemon) {
    Fd a = open_a();
    ASSERT_TRUE(a);
    ASSERT_EQ(::flock(a.get(), LOCK_EX), 0) << errno_name(errno);
    std::vector<Fd> waiting;
    std::vector<std::future<int>> results;
    for (int i = 0; i < 3; ++i) {
        waiting.push_back(open_b(O_RDONLY));
        ASSERT_TRUE(waiting.back());
        const int fd = waiting.back().get();
        results.push_back(std::async(std::launch::async, [fd] {
            // Shared: the three waits can all end once A lets go.
            return ::flock(fd, LOCK_SH) == 0 ? 0 : errno;
        }));
    }
    std::this_thread::sleep_for(300ms);
    for (auto& r : results)
        EXPECT_EQ(r.wait_for(0s), std::future_status::timeout) << "a wait ended while A holds the lock";
    // The mount answers meanwhile.
    EXPECT_EQ(read_whole(b_->mnt() + "/f"), std::string(4096, 'x'));
    struct stat st{};
    EXPECT_EQ(::stat((b_->mnt() + "/f").c_str(), &st), 0) << errno_name(errno);
    ASSERT_EQ(::flock(a.get(), LOCK_UN), 0);
    for (auto& r : results) {
        ASSERT_EQ(r.wait_for(10s), std::future_status::ready) << "a wait did not end after the unlock";
        EXPECT_EQ(r.get(), 0);
    }
}

TEST_P(Locks, PosixLocksConflictAcrossMountsAndWithTheBackingFile) {
    Fd a = open_a(), b = open_b();
    ASSERT_TRUE(a && b);
    ASSERT_EQ(posix_lock(a.get(), F_WRLCK, 0, 100), 0);
    EXPECT_TRUE(held_elsewhere(posix_lock(b.get(), F_WRLCK, 50, 10)));
    EXPECT_TRUE(held_elsewhere(posix_lock(b.get(), F_RDLCK, 99, 1)));
    EXPECT_EQ(posix_lock(b.get(), F_WRLCK, 100, 100), 0) << "a range next to A's";

    // F_GETLK through B reports A's lock; through A, its own locks are no conflict.
    struct flock probe{};
    probe.l_type = F_WRLCK;
    probe.l_whence = SEEK_SET;
    probe.l_start = 10;
    probe.l_len = 5;
    ASSERT_EQ(::fcntl(b.get(), F_GETLK, &probe), 0) << errno_name(errno);
    EXPECT_EQ(probe.l_type, F_WRLCK);
    EXPECT_EQ(probe.l_start, 0);
    EXPECT_EQ(probe.l_len, 100);
    probe = {};
    probe.l_type = F_WRLCK;
    probe.l_whence = SEEK_SET;
    probe.l_len = 50;
    ASSERT_EQ(::fcntl(a.get(), F_GETLK, &probe), 0) << errno_name(errno);
    EXPECT_EQ(probe.l_type, F_UNLCK);

    // A process locking the backing file itself, as a program on another node would.
    const std::string backing = a_->backing() + "/f";
    EXPECT_EQ(in_child([&] {
                  Fd raw(::open(backing.c_str(), O_RDWR | O_CLOEXEC));
                  return held_elsewhere(posix_lock(raw.get(), F_WRLCK, 0, 1)) ? 0 : 1;
              }),
              0)
        << "A's lock did not reach the backing file";

    // Unlocking part of a lock leaves the rest.
    ASSERT_EQ(posix_lock(a.get(), F_UNLCK, 0, 50), 0);
    EXPECT_EQ(posix_lock(b.get(), F_WRLCK, 0, 50), 0) << errno_name(errno);
    EXPECT_TRUE(held_elsewhere(posix_lock(b.get(), F_WRLCK, 60, 1)));
}

// POSIX semantics inside one mount: a process's locks through two descriptors are one
// owner's (no conflict, they merge), another process conflicts with them, and closing either
// descriptor releases them all.
TEST_P(Locks, OneProcessIsOneOwnerAndAnyCloseReleasesItsLocks) {
    Fd a1 = open_a(), a2 = open_a(), b = open_b();
    ASSERT_TRUE(a1 && a2 && b);
    ASSERT_EQ(posix_lock(a1.get(), F_WRLCK, 0, 100), 0);
    EXPECT_EQ(posix_lock(a2.get(), F_WRLCK, 50, 100), 0) << "the same process conflicted with itself";
    const std::string mnt = a_->mnt();
    EXPECT_EQ(in_child([&] {
                  Fd other(::open((mnt + "/f").c_str(), O_RDWR | O_CLOEXEC));
                  return held_elsewhere(posix_lock(other.get(), F_WRLCK, 120, 1)) ? 0 : 1;
              }),
              0)
        << "another process of the same mount took a locked range";
    EXPECT_TRUE(held_elsewhere(posix_lock(b.get(), F_WRLCK, 0, 1)));
    EXPECT_EQ(a2.close(), success());
    EXPECT_EQ(posix_lock(b.get(), F_WRLCK, 0, 150), 0) << "the close did not release the locks";
    // a1 is still open: the process can lock again.
    ASSERT_EQ(posix_lock(b.get(), F_UNLCK, 0, 0), 0);
    EXPECT_EQ(posix_lock(a1.get(), F_RDLCK, 0, 10), 0) << errno_name(errno);
}

// A holder killed while it holds its locks: they go with it.
TEST_P(Locks, LocksOfAKilledHolderGo) {
    const std::string mnt = a_->mnt();
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t holder = ::fork();
    if (holder == 0) {
        Fd f(::open((mnt + "/f").c_str(), O_RDWR | O_CLOEXEC));
        const bool locked = posix_lock(f.get(), F_WRLCK, 0, 0) == 0 && ::flock(f.get(), LOCK_EX) == 0;
        char c = locked ? 'y' : 'n';
        (void)!::write(ready[1], &c, 1);
        ::pause();
        ::_exit(0);
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    Fd b = open_b();
    EXPECT_EQ(c, 'y') << "the holder could not lock";
    EXPECT_TRUE(held_elsewhere(posix_lock(b.get(), F_WRLCK, 0, 1)));
    EXPECT_EQ(::flock(b.get(), LOCK_EX | LOCK_NB), -1);
    ::kill(holder, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(holder, &status, 0), holder);
    EXPECT_EQ(posix_lock(b.get(), F_WRLCK, 0, 1), 0) << "the killed holder's POSIX lock stayed";
    EXPECT_EQ(flock_soon(b.get(), LOCK_EX), 0) << "the killed holder's flock stayed";
}

// F_SETLKW waits while the lock is held elsewhere, ends with EINTR when a signal comes, and
// takes the lock once it is free.
TEST_P(Locks, AWaitForAPosixLockEndsWithTheUnlockOrASignal) {
    Fd a = open_a(), b = open_b();
    ASSERT_TRUE(a && b);
    ASSERT_EQ(posix_lock(a.get(), F_WRLCK, 0, 10), 0);

    struct sigaction on_signal{};
    on_signal.sa_handler = [](int) {};  // no SA_RESTART: the wait returns EINTR
    struct sigaction before{};
    ASSERT_EQ(::sigaction(SIGUSR2, &on_signal, &before), 0);
    const int fd = b.get();
    std::promise<pthread_t> started;
    auto interrupted = std::async(std::launch::async, [&] {
        started.set_value(::pthread_self());
        return posix_lock(fd, F_WRLCK, 5, 1, F_SETLKW);
    });
    const pthread_t waiter = started.get_future().get();
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(interrupted.wait_for(0s), std::future_status::timeout) << "the wait ended while A holds the lock";
    // The signal may come before the waiter is in fcntl: send it until the wait ends.
    for (int i = 0; i < 100 && interrupted.wait_for(50ms) != std::future_status::ready; ++i)
        ::pthread_kill(waiter, SIGUSR2);
    ASSERT_EQ(interrupted.wait_for(10s), std::future_status::ready) << "the signal did not end the wait";
    EXPECT_EQ(interrupted.get(), EINTR);

    auto granted = std::async(std::launch::async, [fd] { return posix_lock(fd, F_WRLCK, 5, 1, F_SETLKW); });
    std::this_thread::sleep_for(100ms);
    ASSERT_EQ(posix_lock(a.get(), F_UNLCK, 0, 0), 0);
    ASSERT_EQ(granted.wait_for(10s), std::future_status::ready) << "the wait did not end after the unlock";
    EXPECT_EQ(granted.get(), 0);
    EXPECT_TRUE(held_elsewhere(posix_lock(a.get(), F_WRLCK, 5, 1))) << "B's lock is not held";
    ::sigaction(SIGUSR2, &before, nullptr);
}

INSTANTIATE_TEST_SUITE_P(Mounts, CloseToOpen,
                         ::testing::Values(std::vector<std::string>{},
                                           std::vector<std::string>{"dbopt"},
                                           std::vector<std::string>{"dbopt", "strict"}),
                         options_name);
INSTANTIATE_TEST_SUITE_P(Mounts, Names,
                         ::testing::Values(std::vector<std::string>{"entry_timeout=0"},
                                           std::vector<std::string>{"dbopt", "entry_timeout=0"}),
                         options_name);
INSTANTIATE_TEST_SUITE_P(Mounts, StrictCoherence,
                         ::testing::Values(std::vector<std::string>{"dbopt", "strict"}), options_name);
INSTANTIATE_TEST_SUITE_P(Mounts, Locks,
                         ::testing::Values(std::vector<std::string>{},
                                           std::vector<std::string>{"dbopt"}),
                         options_name);

}  // namespace
}  // namespace diofs_test

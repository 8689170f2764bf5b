// Record locks as the kernel keeps them, checked where semantics are compared against the
// backing directory itself (ext4 or whatever $TMPDIR is on: the reference), and through a
// mount with and without dbopt:
//   - an open-file-description lock (F_OFD_SETLK) goes at the last close of its open file, not
//     at the close of one of its descriptors, nor at a close of another file by its process;
//   - a POSIX lock granted to a waiting thread is held, even when another thread of the same
//     process closed a descriptor of the file while it waited;
//   - a read lock through a read-only descriptor does not make the file open for writing (it
//     can still be run from the backing directory, and watchers see no IN_CLOSE_WRITE); an
//     owner that adds a write lock through a writable descriptor keeps its read locks.
// And the daemon's budget of lock waits, through a mount only:
//   - one user parking more waits than its share gets ENOLCK for those, while other users'
//     blocking locks wait and succeed as usual, and the daemon does not start a thread per wait;
//   - when the daemon cannot start threads at all (a task limit), blocking locks still wait
//     and are granted.

#include "lock_support.hpp"
#include "mount_fixture.hpp"
#include "test_support.hpp"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <iterator>
#include <sstream>
#include <thread>

namespace diofs_test {
namespace {

using namespace std::chrono_literals;

constexpr uid_t kUser = 65534;  // nobody
constexpr gid_t kUserGroup = 65534;

// A child process that holds a POSIX write lock of [0, 1) on `path` until told to go (its
// death lets the lock go). Ended by its PID in the destructor whatever happened.
class Holder {
public:
    explicit Holder(const std::string& path) {
        int ready[2];
        if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go_, O_CLOEXEC) != 0)
            return;
        std::fflush(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::close(go_[1]);  // the end whose close says "go"
            const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
            char c = fd >= 0 && posix_lock(fd, F_WRLCK, 0, 1) == 0 ? 'y' : 'n';
            (void)!::write(ready[1], &c, 1);
            (void)!::read(go_[0], &c, 1);
            ::_exit(0);
        }
        ::close(ready[1]);
        char c = 0;
        locked_ = ::read(ready[0], &c, 1) == 1 && c == 'y';
        ::close(ready[0]);
    }
    ~Holder() { let_go(); }
    bool locked() const { return locked_; }
    void let_go() {
        if (pid_ <= 0)
            return;
        ::close(go_[1]);
        ::close(go_[0]);
        int status;
        ::waitpid(std::exchange(pid_, -1), &status, 0);
    }

private:
    pid_t pid_ = -1;
    int go_[2] = {-1, -1};
    bool locked_ = false;
};

struct Where {
    std::string name;
    std::vector<std::string> options;
    bool reference;  // the backing directory itself, not the mount
};
void PrintTo(const Where& where, std::ostream* out) { *out << where.name; }

class LockSemantics : public ::testing::TestWithParam<Where> {
protected:
    void SetUp() override {
        DIOFS_REQUIRE_FUSE();
        mount_ = std::make_unique<DiofsMount>(GetParam().options);
        ASSERT_EQ(mount_->start(), "");
        // Served before the test goes on, also where it then only uses the backing directory:
        // a mount unmounted in the moment between its creation and the daemon's first request
        // makes the daemon exit 1 (see the note of issue 18), which is not what these test.
        struct stat served{};
        ASSERT_EQ(::stat(mount_->mnt().c_str(), &served), 0) << errno_name(errno);
        dir_ = GetParam().reference ? mount_->backing() : mount_->mnt();
        ASSERT_EQ(write_whole(mount_->backing() + "/f", std::string(4096, 'x')), 0);
    }
    void TearDown() override {
        if (mount_) {
            EXPECT_EQ(mount_->stop(), "");
        }
    }
    std::string path(const std::string& name = "f") const { return dir_ + "/" + name; }
    Fd open_file(int flags = O_RDWR, const std::string& name = "f") const {
        return Fd(::open(path(name).c_str(), flags | O_CLOEXEC));
    }

    std::unique_ptr<DiofsMount> mount_;
    std::string dir_;
};

TEST_P(LockSemantics, AnOfdLockGoesAtTheLastCloseOfItsOpenFile) {
    Fd a = open_file(), other = open_file();
    ASSERT_TRUE(a && other) << errno_name(errno);
    ASSERT_EQ(posix_lock(a.get(), F_WRLCK, 0, 10, F_OFD_SETLK), 0);
    EXPECT_TRUE(held_elsewhere(posix_lock(other.get(), F_WRLCK, 5, 1, F_OFD_SETLK)));
    Fd a2(::dup(a.get()));
    ASSERT_TRUE(a2);
    EXPECT_EQ(a.close(), success());
    EXPECT_TRUE(held_elsewhere(posix_lock(other.get(), F_WRLCK, 5, 1, F_OFD_SETLK)))
        << "gone at the close of one of two descriptors of its open file";
    Fd third = open_file(O_RDONLY);
    EXPECT_EQ(third.close(), success());
    std::this_thread::sleep_for(100ms);  // the release of `third` reaches the daemon
    EXPECT_TRUE(held_elsewhere(posix_lock(other.get(), F_WRLCK, 5, 1, F_OFD_SETLK)))
        << "gone at the close of another open file of the process";
    EXPECT_EQ(a2.close(), success());
    EXPECT_EQ(soon([&] { return posix_lock(other.get(), F_WRLCK, 0, 10, F_OFD_SETLK); }), 0)
        << "still held 5 s after the last close of its open file";
    ASSERT_EQ(posix_lock(other.get(), F_UNLCK, 0, 0, F_OFD_SETLK), 0);

    // Another process's OFD lock, its only descriptor closed: the lock goes.
    EXPECT_EQ(in_child([&] {
                  Fd f = open_file();
                  return posix_lock(f.get(), F_WRLCK, 0, 0, F_OFD_SETLK);
              }),
              0);
    EXPECT_EQ(soon([&] { return posix_lock(other.get(), F_WRLCK, 0, 0, F_OFD_SETLK); }), 0)
        << "a dead process's OFD lock stayed";
    ASSERT_EQ(posix_lock(other.get(), F_UNLCK, 0, 0, F_OFD_SETLK), 0);

    // Open, lock, close, again and again: the kernel may hand a new open file the address (so
    // the lock owner) of one whose release is still on its way. Each lock is granted once the
    // previous round's release has arrived (soon(): RELEASE is asynchronous, so the last
    // round's lock may still be held a moment), and at the end nothing is held.
    for (int i = 0; i < 200; ++i) {
        Fd f = open_file();
        ASSERT_EQ(soon([&] { return posix_lock(f.get(), F_WRLCK, i % 7, 3, F_OFD_SETLK); }), 0)
            << "round " << i;
    }
    EXPECT_EQ(soon([&] { return posix_lock(other.get(), F_WRLCK, 0, 0, F_OFD_SETLK); }), 0)
        << "a lock of a closed open file stayed";
}

TEST_P(LockSemantics, AGrantedPosixLockIsHeldThoughTheProcessClosedAnotherDescriptorMeanwhile) {
    Holder holder(path());
    ASSERT_TRUE(holder.locked());
    Fd mine = open_file();
    ASSERT_TRUE(mine);
    const int fd = mine.get();
    auto granted = std::async(std::launch::async, [fd] { return posix_lock(fd, F_WRLCK, 0, 1, F_SETLKW); });
    std::this_thread::sleep_for(300ms);
    ASSERT_EQ(granted.wait_for(0s), std::future_status::timeout) << "not waiting";
    // Another thread of this process opens and closes another descriptor of the file: the
    // process's locks go (it holds none yet), not the request it waits with.
    Fd other = open_file(O_RDONLY);
    ASSERT_TRUE(other);
    EXPECT_EQ(other.close(), success());
    std::this_thread::sleep_for(100ms);
    holder.let_go();
    ASSERT_EQ(granted.wait_for(10s), std::future_status::ready) << "the wait did not end";
    ASSERT_EQ(granted.get(), 0);
    std::this_thread::sleep_for(100ms);
    const std::string f = path();
    EXPECT_EQ(in_child([&] {
                  Fd third(::open(f.c_str(), O_RDWR | O_CLOEXEC));
                  return held_elsewhere(posix_lock(third.get(), F_WRLCK, 0, 1)) ? 0 : 1;
              }),
              0)
        << "a third process took the lock the waiter was granted";
}

// A read lock through a read-only descriptor: the backing file is not opened for writing by
// anyone (a program in it can be run; no IN_CLOSE_WRITE), before, during or after the lock.
TEST_P(LockSemantics, AReadLockDoesNotOpenTheFileForWriting) {
    const std::string program = mount_->backing() + "/program";
    ASSERT_EQ(write_whole(program, read_whole("/bin/true")), 0);
    ASSERT_EQ(::chmod(program.c_str(), 0755), 0);
    const int watch = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    ASSERT_GE(watch, 0);
    Fd watcher(watch);
    ASSERT_GE(::inotify_add_watch(watch, program.c_str(), IN_CLOSE_WRITE), 0);

    Fd reader = open_file(O_RDONLY, "program");
    ASSERT_TRUE(reader) << errno_name(errno);
    ASSERT_EQ(posix_lock(reader.get(), F_RDLCK, 0, 0), 0);
    const int ran = in_child([&] {
        ::execl(program.c_str(), program.c_str(), static_cast<char*>(nullptr));
        return errno == ETXTBSY ? 100 : 101;
    });
    EXPECT_EQ(ran, 0) << (ran == 100 ? "ETXTBSY: the file is open for writing" : "not run");
    struct flock probe{};
    probe.l_type = F_WRLCK;
    probe.l_whence = SEEK_SET;
    ASSERT_EQ(::fcntl(reader.get(), F_GETLK, &probe), 0) << errno_name(errno);
    ASSERT_EQ(posix_lock(reader.get(), F_UNLCK, 0, 0), 0);
    EXPECT_EQ(reader.close(), success());
    std::this_thread::sleep_for(200ms);  // the release
    char events[4096];
    EXPECT_EQ(::read(watch, events, sizeof events), -1) << "IN_CLOSE_WRITE on the backing file";
    EXPECT_EQ(errno, EAGAIN);
}

// One process locks for reading through a read-only descriptor, then for writing through a
// writable one: both are held, as one owner's.
TEST_P(LockSemantics, AnOwnerAddsAWriteLockToItsReadLocks) {
    Fd reader = open_file(O_RDONLY), writer = open_file(O_RDWR);
    ASSERT_TRUE(reader && writer);
    ASSERT_EQ(posix_lock(reader.get(), F_RDLCK, 0, 10), 0);
    ASSERT_EQ(posix_lock(writer.get(), F_WRLCK, 20, 10), 0);
    ASSERT_EQ(posix_lock(writer.get(), F_WRLCK, 5, 2), 0) << "the owner conflicted with itself";
    const std::string f = path();
    EXPECT_EQ(in_child([&] {
                  Fd other(::open(f.c_str(), O_RDWR | O_CLOEXEC));
                  int wrong = 0;
                  wrong |= posix_lock(other.get(), F_RDLCK, 0, 5) == 0 ? 0 : 1;
                  wrong |= held_elsewhere(posix_lock(other.get(), F_WRLCK, 0, 1)) ? 0 : 2;
                  wrong |= held_elsewhere(posix_lock(other.get(), F_RDLCK, 5, 1)) ? 0 : 4;
                  wrong |= held_elsewhere(posix_lock(other.get(), F_RDLCK, 25, 1)) ? 0 : 8;
                  wrong |= posix_lock(other.get(), F_WRLCK, 10, 10) == 0 ? 0 : 16;
                  return wrong;
              }),
              0);
}

INSTANTIATE_TEST_SUITE_P(
    Places, LockSemantics,
    ::testing::Values(Where{"Reference", {}, true}, Where{"Plain", {}, false},
                      Where{"Dbopt", {"dbopt"}, false}),
    [](const ::testing::TestParamInfo<Where>& p) { return p.param.name; });

// The daemon's tasks (threads), from /proc.
size_t threads_of(pid_t pid) {
    size_t n = 0;
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("Threads:", 0) == 0)
            n = std::stoul(line.substr(8));
    return n;
}

// CPU time (user + system, clock ticks) the daemon used so far.
long cpu_ticks_of(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream rest(all.substr(all.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14)
            utime = std::stol(field);
        if (i == 15)
            stime = std::stol(field);
    }
    return utime + stime;
}

// `count` threads of this process each wait for an OFD write lock of `path` through a
// descriptor of its own; the results come back as they end.
class ParkedWaits {
public:
    ParkedWaits(const std::string& path, int count, short type = F_WRLCK) {
        for (int i = 0; i < count; ++i) {
            const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
            fds_.push_back(fd);
            results_.push_back(std::async(std::launch::async, [fd, type] {
                return fd < 0 ? EBADF : posix_lock(fd, type, 0, 1, F_OFD_SETLKW);
            }));
        }
    }
    ~ParkedWaits() {
        for (int fd : fds_)
            ::close(fd);
    }
    std::vector<std::future<int>>& results() { return results_; }

private:
    std::vector<int> fds_;
    std::vector<std::future<int>> results_;
};

class LockBudget : public MountTest {};

// A user parks 2000 waits on a file of its own: past its share they get ENOLCK at once, the
// rest wait without a daemon thread each; another user's blocking fcntl and flock meanwhile
// wait for their holder and succeed.
TEST_F(LockBudget, OneUserCannotTakeTheWaitsOfAll) {
    const std::string own = mnt("own"), theirs = mnt("theirs");
    ASSERT_EQ(write_whole(backing("own"), "o"), 0);
    ASSERT_EQ(::chown(backing("own").c_str(), kUser, kUserGroup), 0);
    ASSERT_EQ(::chmod(backing("own").c_str(), 0600), 0);
    ASSERT_EQ(write_whole(backing("theirs"), "t"), 0);
    const size_t threads_before = threads_of(mount().pid());

    // The user's holder and its waits, in a child process of the user's.
    int report[2], done[2];
    ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(done, O_CLOEXEC), 0);
    std::fflush(nullptr);
    const pid_t user = ::fork();
    if (user == 0) {
        ::close(done[1]);  // the end whose close says "done"
        if (::setgroups(0, nullptr) != 0 || ::setgid(kUserGroup) != 0 || ::setuid(kUser) != 0)
            ::_exit(3);
        Fd holder(::open(own.c_str(), O_RDWR | O_CLOEXEC));
        if (posix_lock(holder.get(), F_WRLCK, 0, 1, F_OFD_SETLK) != 0)
            ::_exit(4);
        auto* parked = new ParkedWaits(own, 2000);  // never destroyed: the process ends
        int refused = 0;
        for (int round = 0; round < 100; ++round) {  // until the refusals stop coming
            std::this_thread::sleep_for(50ms);
            int now = 0;
            for (auto& r : parked->results())
                if (r.valid() && r.wait_for(0s) == std::future_status::ready)
                    now += r.get() == ENOLCK ? 1 : 1000000;  // get() leaves r not valid
            refused += now;
            if (now == 0 && refused > 0)
                break;
        }
        (void)!::write(report[1], &refused, sizeof refused);
        char c;
        (void)!::read(done[0], &c, 1);
        ::_exit(0);  // its waits end with it
    }
    ::close(report[1]);
    ::close(done[0]);
    int refused = -1;
    ASSERT_EQ(::read(report[0], &refused, sizeof refused), static_cast<ssize_t>(sizeof refused));
    ::close(report[0]);
    EXPECT_EQ(refused, 2000 - 1024) << "ENOLCK for the waits past the user's share (1000000 each "
                                       "for another answer)";
    const size_t threads_parked = threads_of(mount().pid());
    EXPECT_LT(threads_parked, threads_before + 16) << "a thread per wait";
    const long ticks = cpu_ticks_of(mount().pid());
    std::this_thread::sleep_for(2s);
    std::printf("the daemon with %d waits parked: %zu threads (%zu before), %ld clock ticks of "
                "CPU in 2 s\n",
                1024, threads_parked, threads_before, cpu_ticks_of(mount().pid()) - ticks);

    // Root's blocking waits are not refused: they wait for their holder and succeed.
    {
        Holder holder(theirs);
        ASSERT_TRUE(holder.locked());
        Fd mine(::open(theirs.c_str(), O_RDWR | O_CLOEXEC));
        const int fd = mine.get();
        auto posix = std::async(std::launch::async, [fd] { return posix_lock(fd, F_WRLCK, 0, 1, F_SETLKW); });
        std::this_thread::sleep_for(200ms);
        EXPECT_EQ(posix.wait_for(0s), std::future_status::timeout) << "did not wait";
        holder.let_go();
        ASSERT_EQ(posix.wait_for(10s), std::future_status::ready);
        EXPECT_EQ(posix.get(), 0) << "another user's blocking fcntl";
    }
    {
        Fd a(::open(theirs.c_str(), O_RDWR | O_CLOEXEC)), b(::open(theirs.c_str(), O_RDWR | O_CLOEXEC));
        ASSERT_EQ(::flock(a.get(), LOCK_EX), 0);
        const int fd = b.get();
        auto blocking = std::async(std::launch::async, [fd] { return ::flock(fd, LOCK_EX) == 0 ? 0 : errno; });
        std::this_thread::sleep_for(200ms);
        EXPECT_EQ(blocking.wait_for(0s), std::future_status::timeout) << "did not wait";
        ASSERT_EQ(::flock(a.get(), LOCK_UN), 0);
        ASSERT_EQ(blocking.wait_for(10s), std::future_status::ready);
        EXPECT_EQ(blocking.get(), 0) << "another user's blocking flock";
    }
    ::close(done[1]);
    int status = 0;
    ASSERT_EQ(::waitpid(user, &status, 0), user);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the user's process: " << status;
    // Its waits ended with it (interrupted by its death): the lock is free for the next.
    Fd again(::open(own.c_str(), O_RDWR | O_CLOEXEC));
    EXPECT_EQ(soon([&] { return posix_lock(again.get(), F_WRLCK, 0, 1, F_OFD_SETLK); }), 0);
}

// The daemon in a pids cgroup (v1) that lets it start no thread: blocking locks still wait
// and are granted, more of them than the old budget of threads, and after the limit is lifted.
class NoNewThreads {
public:
    explicit NoNewThreads(pid_t pid) : dir_("/sys/fs/cgroup/pids/diofs-test-" + std::to_string(::getpid())) {
        if (::mkdir(dir_.c_str(), 0755) != 0) {
            why_ = "mkdir " + dir_ + ": " + errno_name(errno);
            return;
        }
        made_ = true;
        teardown_ = EmergencyTeardown("pids cgroup " + dir_, [this] { return lift(); });
        if (!write_to("cgroup.procs", std::to_string(pid)))
            return;
        pid_ = pid;
        std::ifstream current(dir_ + "/pids.current");
        std::string n;
        current >> n;
        write_to("pids.max", n);
    }
    ~NoNewThreads() { lift(); }
    const std::string& why() const { return why_; }
    // Moves the daemon back and removes the cgroup: "" or what failed.
    std::string lift() {
        std::string what;
        if (pid_ > 0) {
            std::ofstream("/sys/fs/cgroup/pids/cgroup.procs") << pid_;
            pid_ = -1;
        }
        if (made_ && ::rmdir(dir_.c_str()) != 0)
            what = "rmdir " + dir_ + ": " + errno_name(errno);
        made_ = false;
        teardown_.reset();
        return what;
    }

private:
    bool write_to(const std::string& file, const std::string& value) {
        std::ofstream out(dir_ + "/" + file);
        out << value;
        out.flush();
        if (!out)
            why_ = "writing " + value + " to " + dir_ + "/" + file + " failed";
        return bool(out);
    }
    std::string dir_, why_;
    bool made_ = false;
    pid_t pid_ = -1;
    EmergencyTeardown teardown_;
};

TEST_F(LockBudget, WaitsNeedNoNewThread) {
    ASSERT_EQ(write_whole(backing("f"), "f"), 0);
    const std::string f = mnt("f");
    Fd holder(::open(f.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_EQ(posix_lock(holder.get(), F_WRLCK, 0, 1, F_OFD_SETLK), 0);
    {
        NoNewThreads limit(mount().pid());
        ASSERT_EQ(limit.why(), "");
        for (int round = 0; round < 2; ++round) {
            {
                ParkedWaits parked(f, 1000, F_RDLCK);  // shared: all can have it at once
                std::this_thread::sleep_for(1s);
                ASSERT_EQ(posix_lock(holder.get(), F_UNLCK, 0, 0, F_OFD_SETLK), 0);
                int granted = 0;
                for (auto& r : parked.results())
                    granted += r.wait_for(20s) == std::future_status::ready && r.get() == 0;
                EXPECT_EQ(granted, 1000) << "round " << round;
            }  // their descriptors close, and their read locks go
            ASSERT_EQ(soon([&] { return posix_lock(holder.get(), F_WRLCK, 0, 1, F_OFD_SETLK); }), 0);
        }
        EXPECT_EQ(limit.lift(), "");
    }
    Fd waiter(::open(f.c_str(), O_RDWR | O_CLOEXEC));
    const int fd = waiter.get();
    auto after = std::async(std::launch::async, [fd] { return posix_lock(fd, F_WRLCK, 0, 1, F_OFD_SETLKW); });
    std::this_thread::sleep_for(200ms);
    ASSERT_EQ(posix_lock(holder.get(), F_UNLCK, 0, 0, F_OFD_SETLK), 0);
    ASSERT_EQ(after.wait_for(10s), std::future_status::ready);
    EXPECT_EQ(after.get(), 0);
}

}  // namespace
}  // namespace diofs_test

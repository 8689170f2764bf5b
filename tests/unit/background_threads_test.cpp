// BackgroundThreads (background_threads.hpp), over a Filesystem of a temporary directory (no
// mount): the stats thread logs at SIGUSR1, and stop() ends the page drops and the lock waits
// before it closes the files the kernel still holds, while the I/O threads still run, and
// then ends those.

#include "temp_dir.hpp"

#include "diofs/background_threads.hpp"
#include "diofs/filesystem.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace diofs {
namespace {

using namespace std::chrono_literals;

// A Filesystem under dbopt, with read-ahead, coalescing and the kernel's pages (the defaults),
// so that every background thread has its owner.
class BackgroundThreadsTest : public ::testing::Test {
protected:
    void SetUp() override {
        Options options;
        options.dbopt = true;
        options.source = dir_;
        options.mountpoint = "/mnt/somewhere";
        int fd = ::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        struct stat st;
        ASSERT_EQ(::fstat(fd, &st), 0);
        fs_ = std::make_unique<Filesystem>(options, UniqueFd(fd), st);
        ASSERT_NE(fs_->streaming(), nullptr);
        ASSERT_NE(fs_->kernel_pages(), nullptr);
    }
    void TearDown() override { fs_.reset(); }

    TempDir tmp_{"threads"};
    const std::string dir_ = tmp_.path();
    std::unique_ptr<Filesystem> fs_;
};

// What an open file the kernel still holds at the end of the session finds when it is closed.
struct Seen {
    bool closed = false;
    bool lock_waits_ended = false;  // a wait asked for now is not kept
    bool io_threads_ran = false;    // a task posted now runs
    uint64_t drops_made = 0;        // after a drop asked for now
};

// Stands for an OpenFile in the handles: its destructor is its close.
struct Probe {
    Filesystem& fs;
    Seen& seen;
    ~Probe() {
        LockWaiters& waiters = fs.lock_waiters();
        const size_t before = waiters.waiting();
        int id;
        waiters.wait({2, 0, &id}, [] { return -EAGAIN; }, [](int) {});
        seen.lock_waits_ended = waiters.waiting() == before;

        std::promise<void> ran;
        fs.streaming()->workers.post([&] { ran.set_value(); });
        seen.io_threads_ran = ran.get_future().wait_for(5s) == std::future_status::ready;

        KernelPages& pages = *fs.kernel_pages();
        pages.drop_all(1);
        pages.wait_idle();
        seen.drops_made = pages.drops_made();
        seen.closed = true;
    }
};

TEST_F(BackgroundThreadsTest, StopEndsDropsAndLockWaitsThenClosesFilesWhileIoThreadsRun) {
    Seen seen;
    {
        BackgroundThreads threads(*fs_);
        threads.start();
        std::atomic<bool> answered = false;
        int id;
        fs_->lock_waiters().wait({1, 0, &id}, [] { return -EAGAIN; },
                                 [&](int) { answered = true; });
        ASSERT_EQ(fs_->lock_waiters().waiting(), 1u);
        fs_->handles().add(std::unique_ptr<Probe>(new Probe{*fs_, seen}));
        threads.stop();
        EXPECT_FALSE(answered) << "a wait is not answered after the session";
        EXPECT_TRUE(seen.closed) << "the file the kernel still held was not closed";
        EXPECT_EQ(fs_->handles().close_all(), 0u);
    }
    EXPECT_TRUE(seen.lock_waits_ended) << "the lock waits ran on while the files were closed";
    EXPECT_TRUE(seen.io_threads_ran) << "the I/O threads had stopped before the files closed";
    EXPECT_EQ(seen.drops_made, 0u) << "the kernel's pages were dropped after the session";
}

// The daemon's own log sink, as lines, with a wait for one.
class LineSink : public spdlog::sinks::base_sink<std::mutex> {
public:
    bool wait_for_line_starting(const std::string& start) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, 10s, [&] {
            for (const std::string& line : lines_)
                if (line.rfind(start, 0) == 0)
                    return true;
            return false;
        });
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        std::lock_guard lock(mutex_);
        lines_.emplace_back(msg.payload.data(), msg.payload.size());
        changed_.notify_all();
    }
    void flush_() override {}

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::string> lines_;
};

// SIGUSR1 to the process, which every other thread blocks (here: the test's own, before it
// starts any), reaches the stats thread, which logs one line; stop() ends it.
TEST_F(BackgroundThreadsTest, SigusrOneLogsTheStatsUntilStop) {
    auto sink = std::make_shared<LineSink>();
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    struct Restore {
        std::shared_ptr<spdlog::logger> logger;
        ~Restore() { spdlog::set_default_logger(logger); }
    } restore{previous};
    BackgroundThreads::block_stats_signal();
    BackgroundThreads threads(*fs_);
    threads.start();
    ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
    EXPECT_TRUE(sink->wait_for_line_starting("stats: inodes=0 "));
    threads.stop();
}

}  // namespace
}  // namespace diofs

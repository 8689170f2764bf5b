// A test that hangs leaves nothing behind when it reaches its deadline or is interrupted
// (emergency_teardown.hpp): teardown_probe hangs on a stopped daemon's mount over an xfs loop
// filesystem, with a child process hanging too; each test ends it one way and then looks for
// anything of it left: a mount, a loop device, a process, a file in its TMPDIR.

#include "loop_device.hpp"
#include "mount_fixture.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef DIOFS_TEARDOWN_PROBE
#error "DIOFS_TEARDOWN_PROBE (the path of teardown_probe) must be defined by the build"
#endif

namespace diofs_test {
namespace {

using Clock = std::chrono::steady_clock;

// Every line of /proc/self/mountinfo that names `text`.
std::string mountinfo_mentioning(const std::string& text) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line, found;
    while (std::getline(in, line))
        if (line.find(text) != std::string::npos)
            found += line + "\n";
    return found;
}

// The loop devices whose backing file lies under `dir`.
std::string loop_devices_under(const std::string& dir) {
    std::string found;
    DIR* block = ::opendir("/sys/block");
    if (!block)
        return found;
    while (const dirent* e = ::readdir(block)) {
        if (std::string(e->d_name).rfind("loop", 0) != 0)
            continue;
        std::ifstream in(std::string("/sys/block/") + e->d_name + "/loop/backing_file");
        std::string backing;
        if (std::getline(in, backing) && backing.rfind(dir + "/", 0) == 0)
            found += std::string(e->d_name) + " (" + backing + ") ";
    }
    ::closedir(block);
    return found;
}

bool process_exists(pid_t pid) {
    return pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH);
}

std::vector<std::string> entries_of(const std::string& dir) {
    std::vector<std::string> names;
    DIR* d = ::opendir(dir.c_str());
    if (!d)
        return names;
    while (const dirent* e = ::readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
            names.emplace_back(e->d_name);
    ::closedir(d);
    return names;
}

class EmergencyTeardownTest : public ::testing::Test {
protected:
    void SetUp() override {
        DIOFS_REQUIRE_FUSE();
        if (auto why = loop_unavailable_reason("xfs")) {
            if (ci_mode())
                FAIL() << "an xfs loop device is required under CI=true: " << *why;
            GTEST_SKIP() << *why;
        }
        tmp_ = make_temporary_directory("teardown");
        ASSERT_NE(tmp_, "") << errno_name(errno);
    }

    void TearDown() override {
        // Should a check above have failed with the probe still running: its own teardown
        // first, SIGKILL only when that does not end it.
        if (probe_ > 0 && process_exists(probe_)) {
            ::kill(probe_, SIGTERM);
            if (wait_probe(std::chrono::seconds(60)) == -1) {
                ::kill(probe_, SIGKILL);
                ::waitpid(probe_, nullptr, 0);
            }
        }
        if (!tmp_.empty())
            ::rmdir(tmp_.c_str());
    }

    // Starts the probe with TMPDIR=tmp_ and `deadline` (0: none) and waits for its "ready" line.
    void start_probe(int deadline_seconds) {
        int out[2];
        ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
        err_path_ = tmp_ + ".stderr";
        const std::string tmpdir = "TMPDIR=" + tmp_;
        const std::string deadline = "DIOFS_TEST_DEADLINE=" + std::to_string(deadline_seconds);
        probe_ = ::fork();
        ASSERT_GE(probe_, 0);
        if (probe_ == 0) {
            ::dup2(out[1], 1);
            int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (err >= 0)
                ::dup2(err, 2);
            ::putenv(const_cast<char*>(tmpdir.c_str()));
            if (deadline_seconds > 0)
                ::putenv(const_cast<char*>(deadline.c_str()));
            else
                ::unsetenv("DIOFS_TEST_DEADLINE");
            ::execl(DIOFS_TEARDOWN_PROBE, DIOFS_TEARDOWN_PROBE, static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(out[1]);
        std::string line;
        const auto deadline_at = Clock::now() + std::chrono::seconds(60);
        char c;
        while (Clock::now() < deadline_at) {
            pollfd p{out[0], POLLIN, 0};
            if (::poll(&p, 1, 1000) <= 0)
                continue;
            if (::read(out[0], &c, 1) != 1 || c == '\n')
                break;
            line += c;
        }
        ::close(out[0]);
        std::istringstream words(line);
        std::string ready;
        words >> ready >> mnt_ >> loop_device_ >> daemon_ >> child_;
        ASSERT_EQ(ready, "ready") << "the probe did not get ready: '" << line << "'; stderr:\n"
                                  << probe_stderr();
    }

    // Waits (at most `limit`) for the probe to end; its wait status, or -1.
    int wait_probe(std::chrono::seconds limit) {
        const auto until = Clock::now() + limit;
        while (Clock::now() < until) {
            int status;
            if (::waitpid(probe_, &status, WNOHANG) == probe_) {
                probe_ = -1;
                return status;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        return -1;
    }

    std::string probe_stderr() const {
        std::ifstream in(err_path_);
        std::ostringstream s;
        s << in.rdbuf();
        return s.str();
    }

    // Nothing of the probe is left: no mount, loop device, process or file.
    void expect_nothing_left() {
        // The daemon was the probe's child: once the probe is gone, it is reaped by init.
        const auto until = Clock::now() + std::chrono::seconds(10);
        while ((process_exists(daemon_) || process_exists(child_)) && Clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        EXPECT_EQ(mountinfo_mentioning(tmp_), "");
        EXPECT_EQ(loop_devices_under(tmp_), "");
        EXPECT_FALSE(process_exists(daemon_)) << "the daemon " << daemon_ << " still runs";
        EXPECT_FALSE(process_exists(child_)) << "the probe's child " << child_ << " still runs";
        EXPECT_EQ(entries_of(tmp_), std::vector<std::string>{});
        ::unlink(err_path_.c_str());
    }

    // Sends `signal` to a ready probe: it ends with 128 + signal, leaving nothing.
    void expect_torn_down_on(int signal);

    std::string tmp_, err_path_, mnt_, loop_device_;
    pid_t probe_ = -1, daemon_ = -1, child_ = -1;
};

TEST_F(EmergencyTeardownTest, AHungTestIsTornDownAtItsDeadline) {
    ASSERT_NO_FATAL_FAILURE(start_probe(8));
    const int status = wait_probe(std::chrono::seconds(90));
    ASSERT_NE(status, -1) << "the probe still runs 90 s after its 8 s deadline; stderr:\n"
                          << probe_stderr();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "wait status " << status;
    const std::string err = probe_stderr();
    EXPECT_NE(err.find("DIOFS_TEST_DEADLINE"), std::string::npos) << err;
    EXPECT_NE(err.find("diofs mount " + mnt_), std::string::npos) << err;
    EXPECT_NE(err.find("ending child process " + std::to_string(child_)), std::string::npos)
        << err;
    expect_nothing_left();
}

// SIGTERM (a run stopped by tests/run.sh, or by a service manager) and SIGINT (Ctrl-C).
void EmergencyTeardownTest::expect_torn_down_on(int signal) {
    ASSERT_NO_FATAL_FAILURE(start_probe(0));
    ::kill(probe_, signal);
    const int status = wait_probe(std::chrono::seconds(90));
    ASSERT_NE(status, -1) << "the probe still runs 90 s after SIG" << ::sigabbrev_np(signal)
                          << "; stderr:\n" << probe_stderr();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + signal)
        << "wait status " << status;
    const std::string said = "interrupted by SIG" + std::string(::sigabbrev_np(signal));
    EXPECT_NE(probe_stderr().find(said), std::string::npos) << probe_stderr();
    expect_nothing_left();
}

TEST_F(EmergencyTeardownTest, AHungTestIsTornDownOnSigterm) {
    expect_torn_down_on(SIGTERM);
}

TEST_F(EmergencyTeardownTest, AHungTestIsTornDownOnSigint) {
    expect_torn_down_on(SIGINT);
}

}  // namespace
}  // namespace diofs_test

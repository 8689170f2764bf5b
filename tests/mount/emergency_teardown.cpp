#include "emergency_teardown.hpp"

#include "mount_fixture.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace diofs_test {
namespace {

using Clock = std::chrono::steady_clock;

// When the program started, near enough: the deadline counts from here, as ctest's TIMEOUT
// counts from the start of the test's process.
const Clock::time_point program_start = Clock::now();

struct Entry {
    unsigned long id;
    std::string what;
    std::function<std::string()> teardown;
    std::string directory;
};

// Leaked on purpose: the guard may still use them while static destructors run at exit.
struct Registry {
    std::mutex mutex;  // guards entries and next_id; the guard takes it for good (header)
    std::vector<Entry> entries;
    unsigned long next_id = 1;
};
Registry& registry() {
    static Registry* r = new Registry;
    return *r;
}

// The write end of the pipe that the signal handler wakes the guard through, and the process it
// belongs to: a child forked by a test (without exec) inherits the handler, and its signals are
// its own business.
int wake_fd = -1;
pid_t guard_pid = -1;
// The guard thread once it tears down: a teardown it runs may reach its owner's reset(), which
// must not wait for the lock the guard holds.
std::atomic<std::thread::id> tearing_down_thread{};

void on_signal(int signal) {
    if (::getpid() != guard_pid) {
        ::signal(signal, SIG_DFL);
        ::raise(signal);
        return;
    }
    const unsigned char byte = static_cast<unsigned char>(signal);
    const int saved = errno;
    ssize_t ignored = ::write(wake_fd, &byte, 1);
    (void)ignored;
    errno = saved;
}

// Seconds from the start of the program until the guard tears down, from DIOFS_TEST_DEADLINE;
// negative when not set (a test run by hand: only signals wake the guard).
double deadline_seconds() {
    const char* text = std::getenv("DIOFS_TEST_DEADLINE");
    if (!text || !*text)
        return -1;
    char* end = nullptr;
    const double seconds = std::strtod(text, &end);
    return end && *end == '\0' && seconds > 0 ? seconds : -1;
}

// The PIDs of this process's children that are still there (running or zombies).
std::vector<pid_t> child_pids() {
    std::vector<pid_t> pids;
    DIR* proc = ::opendir("/proc");
    if (!proc)
        return pids;
    const pid_t self = ::getpid();
    while (const dirent* e = ::readdir(proc)) {
        char* end = nullptr;
        const long pid = std::strtol(e->d_name, &end, 10);
        if (!end || *end != '\0' || pid <= 0)
            continue;
        std::ifstream in("/proc/" + std::string(e->d_name) + "/stat");
        std::string stat;
        std::getline(in, stat);
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses; the last ')' ends it.
        const size_t close = stat.rfind(')');
        if (close == std::string::npos)
            continue;
        char state = 0;
        long ppid = 0;
        if (std::sscanf(stat.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == self)
            pids.push_back(static_cast<pid_t>(pid));
    }
    ::closedir(proc);
    return pids;
}

[[noreturn]] void tear_down_and_exit(const std::string& why, int status) {
    Registry& r = registry();
    r.mutex.lock();  // for good: see the header
    tearing_down_thread = std::this_thread::get_id();
    std::fprintf(stderr, "[ diofs    ] %s: tearing down what the test still holds (%zu)\n",
                 why.c_str(), r.entries.size());
    for (auto it = r.entries.rbegin(); it != r.entries.rend(); ++it) {
        std::fprintf(stderr, "[ diofs    ]   %s\n", it->what.c_str());
        try {
            if (const std::string problems = it->teardown(); !problems.empty())
                std::fprintf(stderr, "[ diofs    ]   ... %s\n", problems.c_str());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "[ diofs    ]   ... failed: %s\n", e.what());
        } catch (...) {
            std::fprintf(stderr, "[ diofs    ]   ... failed\n");
        }
    }
    // Whatever the test started and still runs (a writer blocked in the mount, a lock holder):
    // ours, by PID.
    for (pid_t pid : child_pids()) {
        std::fprintf(stderr, "[ diofs    ]   ending child process %d\n", static_cast<int>(pid));
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }
    // The test's own threads may have gone on writing into the directories after their mounts
    // went (a test fails at its next step, then waits in its teardown for the lock held here).
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (const Entry& e : r.entries)
        if (!e.directory.empty())
            remove_temporary_directory(e.directory);
    std::fflush(stderr);
    std::fflush(stdout);
    ::_exit(status);
}

void guard(int wake_read_fd) {
    const double deadline = deadline_seconds();
    while (true) {
        int timeout_ms = -1;
        if (deadline > 0) {
            const double left =
                deadline - std::chrono::duration<double>(Clock::now() - program_start).count();
            if (left <= 0)
                tear_down_and_exit("DIOFS_TEST_DEADLINE: still running after " +
                                       std::to_string(static_cast<long>(deadline)) +
                                       " s, close to the test's timeout",
                                   1);
            timeout_ms = static_cast<int>(left * 1000) + 1;
        }
        pollfd p{wake_read_fd, POLLIN, 0};
        const int ready = ::poll(&p, 1, timeout_ms);
        if (ready < 0 && errno != EINTR)
            return;  // cannot happen with a valid descriptor; nothing left to guard with
        unsigned char signal = 0;
        if (ready > 0 && ::read(wake_read_fd, &signal, 1) == 1) {
            const char* name = ::sigabbrev_np(signal);
            tear_down_and_exit("interrupted by " + (name ? "SIG" + std::string(name)
                                                         : "signal " + std::to_string(signal)),
                               128 + signal);
        }
    }
}

// The signals that end a run. Only the guard thread takes them: a signal handled by a thread
// that waits in a request to a stopped daemon would never run its handler (FUSE waits on
// after the first signal, killable only), and the guard would never hear of it.
sigset_t ending_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int signal : {SIGINT, SIGTERM, SIGHUP})
        sigaddset(&set, signal);
    return set;
}

// A child forked by a test (without exec, or exec-ing a program of its own) takes these signals
// as any process does.
void unblock_in_child() {
    const sigset_t set = ending_signals();
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
}

// Before main(), in the only thread there is: the signals are blocked there (and so in every
// thread the test makes later), the handlers installed, and the guard started; a program that
// registers nothing still ends on a signal or at its deadline, with status and message alike.
[[maybe_unused]] const bool guard_started = [] {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        std::fprintf(stderr, "[ diofs    ] no emergency teardown: pipe2: %s\n",
                     std::strerror(errno));
        return false;
    }
    wake_fd = fds[1];
    guard_pid = ::getpid();
    struct sigaction action {};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (int signal : {SIGINT, SIGTERM, SIGHUP})
        ::sigaction(signal, &action, nullptr);
    const sigset_t set = ending_signals();
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
    // Output to a reader that is gone (ctest killed, a pipe closed) must not end the program
    // before its teardown: a write fails with EPIPE instead. A child gets the default back.
    ::signal(SIGPIPE, SIG_IGN);
    ::pthread_atfork(nullptr, nullptr, unblock_in_child);
    std::thread([read_fd = fds[0], set] {
        ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
        guard(read_fd);
    }).detach();
    return true;
}();

}  // namespace

EmergencyTeardown::EmergencyTeardown(std::string what, std::function<std::string()> teardown,
                                     std::string directory) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    id_ = r.next_id++;
    r.entries.push_back({id_, std::move(what), std::move(teardown), std::move(directory)});
}

EmergencyTeardown& EmergencyTeardown::operator=(EmergencyTeardown&& other) noexcept {
    if (this != &other) {
        reset();
        id_ = other.id_;
        other.id_ = 0;
    }
    return *this;
}

void EmergencyTeardown::reset() {
    if (id_ == 0)
        return;
    // The guard's own teardown of this owner: id_ stays, so that the owner's thread, should it
    // reach reset() too, waits for the lock (and the end of the program) instead of tearing
    // down the same things at the same time.
    if (tearing_down_thread.load() == std::this_thread::get_id())
        return;
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    std::erase_if(r.entries, [this](const Entry& e) { return e.id == id_; });
    id_ = 0;
}

}  // namespace diofs_test

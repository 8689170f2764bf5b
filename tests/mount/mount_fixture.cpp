#include "mount_fixture.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string_view>
#include <thread>

#ifndef DIOFS_BINARY
#error "DIOFS_BINARY (the path of the diofs executable) must be defined by the build"
#endif

namespace diofs_test {
namespace {

using Clock = std::chrono::steady_clock;

// /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(const std::string& field) {
    std::string out;
    for (size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size()) {
            const std::string oct = field.substr(i + 1, 3);
            if (oct.find_first_not_of("01234567") == std::string::npos) {
                out += static_cast<char>(std::stoi(oct, nullptr, 8));
                i += 3;
                continue;
            }
        }
        out += field[i];
    }
    return out;
}

// The file system type of the topmost mount on `path` in this mount namespace, or "".
std::string mount_type_of(const std::string& path) {
    std::ifstream in("/proc/self/mountinfo");
    std::string line, type;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string id, parent, devno, root, mountpoint;
        fields >> id >> parent >> devno >> root >> mountpoint;
        if (unescape_mountinfo(mountpoint) != path)
            continue;
        std::string word;
        while (fields >> word && word != "-") {
        }
        std::string fstype;
        fields >> fstype;
        type = fstype;  // later lines are mounted on top of earlier ones
    }
    return type;
}

int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
    if (type == FTW_DP || type == FTW_D || type == FTW_DNR)
        ::rmdir(path);
    else
        ::unlink(path);
    return 0;  // go on whatever happens: remove as much as we can
}

std::string describe_status(int status) {
    std::ostringstream s;
    if (WIFEXITED(status))
        s << "exited with status " << WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        s << "was killed by signal " << WTERMSIG(status) << " (" << strsignal(WTERMSIG(status))
          << ")" << (WCOREDUMP(status) ? ", core dumped" : "");
    else
        s << "ended with wait status " << status;
    return s.str();
}

}  // namespace

std::optional<std::string> fuse_unavailable_reason() {
    struct stat st;
    if (::stat("/dev/fuse", &st) != 0)
        return std::string("/dev/fuse: ") + std::strerror(errno);
    int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return std::string("cannot open /dev/fuse: ") + std::strerror(errno);
    ::close(fd);
    if (::geteuid() != 0)
        return std::string("the mount tests must run as root (allow_other, other users' "
                           "credentials, chown)");
    return std::nullopt;
}

bool ci_mode() {
    const char* ci = std::getenv("CI");
    return ci && std::strcmp(ci, "true") == 0;
}

std::string errno_name(int err) {
    if (err == 0)
        return "0";
    const char* name = ::strerrorname_np(err);
    return name ? std::string(name) : "errno " + std::to_string(err);
}

std::string make_temporary_directory(const std::string& kind) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string pattern = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/diofs-" + kind +
                          "-XXXXXX";
    if (!::mkdtemp(pattern.data()))
        return "";
    ::chmod(pattern.c_str(), 0755);
    return pattern;
}

void remove_temporary_directory(const std::string& dir) {
    // FTW_MOUNT: never cross into another file system, whatever happened before.
    ::nftw(dir.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

DiofsMount::DiofsMount(std::vector<std::string> options) : options_(std::move(options)) {}

void DiofsMount::use_directories(std::string backing, std::string ref) {
    given_backing_ = std::move(backing);
    given_ref_ = std::move(ref);
}

DiofsMount::~DiofsMount() {
    std::string problems = stop();
    if (!problems.empty())
        std::cerr << "[diofs mount teardown] " << problems << "\n";
}

std::string DiofsMount::start(std::chrono::milliseconds timeout,
                              const std::function<void()>& on_mounted) {
    if (!dir_.empty())
        return "start() called twice";
    dir_ = make_temporary_directory("mount");
    if (dir_.empty())
        return std::string("mkdtemp: ") + std::strerror(errno);
    // The daemon is killed first: the test's requests fail at once (ENOTCONN) instead of going
    // on while the guard unmounts, and nothing it held matters any more.
    emergency_ = EmergencyTeardown(
        "diofs mount " + dir_ + "/mnt",
        [this] {
            if (daemon_alive())
                ::kill(pid_, SIGKILL);
            return stop();
        },
        dir_);
    backing_ = given_backing_.empty() ? dir_ + "/backing" : given_backing_;
    mnt_ = dir_ + "/mnt";
    ref_ = given_ref_.empty() ? dir_ + "/ref" : given_ref_;
    log_path_ = dir_ + "/daemon.log";
    for (const std::string* d : {&backing_, &mnt_, &ref_}) {
        if ((d == &backing_ && !given_backing_.empty()) || (d == &ref_ && !given_ref_.empty())) {
            struct stat st;
            if (::stat(d->c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
                return "the directory given, " + *d + ", is not there: " + std::strerror(errno);
            continue;
        }
        if (::mkdir(d->c_str(), 0755) != 0 || ::chmod(d->c_str(), 0755) != 0)
            return "mkdir " + *d + ": " + std::strerror(errno);
    }

    // Everything the child needs is prepared before fork(): after it only system calls.
    std::vector<std::string> args = {DIOFS_BINARY, backing_, mnt_, "-f"};
    if (!options_.empty()) {
        std::string joined;
        for (const auto& o : options_)
            joined += (joined.empty() ? "" : ",") + o;
        args.push_back("-o");
        args.push_back(joined);
    }
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0)
        return "cannot create " + log_path_ + ": " + std::strerror(errno);
    int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    const pid_t parent = ::getpid();

    pid_t pid = ::fork();
    if (pid < 0) {
        int err = errno;
        ::close(log_fd);
        if (null_fd >= 0)
            ::close(null_fd);
        return std::string("fork: ") + std::strerror(err);
    }
    if (pid == 0) {
        // If the test process dies without its teardown, the daemon unmounts and exits.
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (::getppid() != parent)
            ::_exit(127);
        // Out of the test's process group: a Ctrl-C at the terminal reaches the test, whose
        // teardown unmounts in order (emergency_teardown.hpp), not the daemon behind its back.
        ::setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL);
        if (null_fd >= 0)
            ::dup2(null_fd, 0);
        ::dup2(log_fd, 1);
        ::dup2(log_fd, 2);
        ::syscall(SYS_close_range, 3U, ~0U, 0U);
        ::execv(argv[0], argv.data());
        static const char msg[] = "test fixture: execv of the diofs binary failed\n";
        ssize_t ignored = ::write(2, msg, sizeof msg - 1);
        (void)ignored;
        ::_exit(127);
    }
    ::close(log_fd);
    if (null_fd >= 0)
        ::close(null_fd);
    pid_ = pid;

    const auto deadline = Clock::now() + timeout;
    while (true) {
        if (on_mounted && mountpoint_listed_fast()) {
            on_mounted();  // first, then the slower check of the type
            if (is_mounted())
                return "";
        } else if (!on_mounted && is_mounted()) {
            return "";
        }
        if (!daemon_alive())
            return "diofs " + exit_description_ + " before mounting " + mnt_ + "; its log:\n" +
                   log();
        if (Clock::now() > deadline)
            return "diofs did not mount " + mnt_ + " within " +
                   std::to_string(timeout.count()) + " ms; its log:\n" + log();
        if (!on_mounted)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

// A raw scan of /proc/self/mountinfo for " MNT ", much quicker than parsing it: for the tight
// poll of start() with a hook, which wants to act the moment the mount appears.
bool DiofsMount::mountpoint_listed_fast() const {
    int fd = ::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    thread_local std::string buf;
    buf.resize(1 << 16);
    size_t used = 0;
    while (true) {
        if (used == buf.size())
            buf.resize(buf.size() * 2);
        ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
        if (n <= 0)
            break;
        used += static_cast<size_t>(n);
    }
    ::close(fd);
    return std::string_view(buf.data(), used).find(" " + mnt_ + " ") != std::string_view::npos;
}

bool DiofsMount::is_mounted() const {
    return !mnt_.empty() && mount_type_of(mnt_) == "fuse.diofs";
}

void DiofsMount::note_exit(int status) {
    reaped_ = true;
    exit_status_ = status;
    exit_description_ = describe_status(status);
}

std::string DiofsMount::ending() const {
    if (WIFEXITED(exit_status_) && WEXITSTATUS(exit_status_) == 0)
        return exit_description_;
    const std::string report = sanitizer_report();
    return report.empty() ? exit_description_
                          : exit_description_ + "; its sanitizer report:\n" + report;
}

std::string DiofsMount::terminate(std::chrono::milliseconds timeout) {
    if (pid_ <= 0 || !daemon_alive())
        return "the daemon was not running (" + exit_description_ + ")";
    terminated_ = true;
    if (::kill(pid_, SIGTERM) != 0)
        return std::string("kill(SIGTERM): ") + std::strerror(errno);
    if (!wait_for_exit(timeout))
        return "the daemon still runs " + std::to_string(timeout.count()) + " ms after SIGTERM";
    return ending();
}

bool DiofsMount::daemon_alive() {
    if (pid_ <= 0 || reaped_)
        return false;
    int status;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        note_exit(status);
        return false;
    }
    if (r < 0 && errno == ECHILD) {  // not ours to wait for any more: never signal that PID
        reaped_ = true;
        exit_status_ = 0;
        exit_description_ = "could not be waited for (ECHILD)";
        return false;
    }
    return true;
}

bool DiofsMount::wait_for_exit(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (daemon_alive()) {
        if (Clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

namespace {

// Where each thread of `pid` is: its name, state and kernel stack (root may read it), for a
// report on a daemon that does not exit.
std::string thread_states(pid_t pid) {
    std::string out;
    const std::string task = "/proc/" + std::to_string(pid) + "/task";
    DIR* dir = ::opendir(task.c_str());
    if (!dir)
        return "(no " + task + ")\n";
    while (const dirent* e = ::readdir(dir)) {
        if (e->d_name[0] == '.')
            continue;
        const std::string base = task + "/" + e->d_name;
        auto first_line = [](const std::string& path) {
            std::ifstream in(path);
            std::string line;
            std::getline(in, line);
            return line;
        };
        std::ifstream stack(base + "/stack");
        std::string frames, frame;
        for (int i = 0; i < 8 && std::getline(stack, frame); ++i)
            frames += " < " + frame.substr(frame.find(' ') + 1);
        out += "  " + std::string(e->d_name) + " " + first_line(base + "/comm") + " [" +
               first_line(base + "/wchan") + "]" + frames + "\n";
    }
    ::closedir(dir);
    return out;
}

}  // namespace

std::string DiofsMount::stop() {
    emergency_.reset();
    if (stopped_ || dir_.empty())
        return "";
    stopped_ = true;
    std::string problems;
    auto note = [&](const std::string& p) { problems += (problems.empty() ? "" : "; ") + p; };

    if (pid_ > 0 && !terminated_ && !daemon_alive())
        note("the daemon " + ending() + " before the test unmounted it");

    if (is_mounted()) {
        // Only our own mount point. EBUSY can be a file still being closed: retry a while.
        bool unmounted = false;
        int error = 0;
        for (int attempt = 0; attempt < 100 && !unmounted; ++attempt) {
            if (::umount2(mnt_.c_str(), UMOUNT_NOFOLLOW) == 0) {
                unmounted = true;
                break;
            }
            error = errno;
            if (!is_mounted())
                unmounted = true;
            else if (error == EBUSY)
                std::this_thread::sleep_for(std::chrono::milliseconds(30));
            else
                break;
        }
        if (!unmounted && is_mounted()) {
            note(std::string("umount failed (") + std::strerror(error) + "), unmounted lazily");
            ::umount2(mnt_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
        }
    }

    if (pid_ > 0 && !reaped_) {
        if (!wait_for_exit(std::chrono::seconds(5))) {
            note("the daemon did not exit after the unmount: SIGTERM; where its threads were:\n" +
                 thread_states(pid_) + "its log:\n" + log_tail(15));
            ::kill(pid_, SIGTERM);
            ::kill(pid_, SIGCONT);  // a stopped daemon (a test's SIGSTOP) acts on it only so
            if (!wait_for_exit(std::chrono::seconds(5))) {
                note("no exit after SIGTERM either: SIGKILL");
                ::kill(pid_, SIGKILL);
                int status;
                if (::waitpid(pid_, &status, 0) == pid_)
                    note_exit(status);
            }
        }
        if (reaped_ && !(WIFEXITED(exit_status_) && WEXITSTATUS(exit_status_) == 0))
            note("the daemon " + ending());
    }

    if (is_mounted()) {
        note(mnt_ + " is still mounted: " + dir_ + " is left in place");
        return problems;
    }
    // DIOFS_TEST_KEEP_LOG=FILE: the whole daemon log of a failed test is kept there (to read a
    // -o debug trace after the temporary directory has gone).
    if (const char* keep = std::getenv("DIOFS_TEST_KEEP_LOG");
        keep && *keep && ::testing::Test::HasFailure())
        std::ofstream(keep) << log();
    remove_temporary_directory(dir_);
    return problems;
}

std::string DiofsMount::log() const {
    std::ifstream in(log_path_);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string DiofsMount::log_tail(size_t max_lines) const {
    std::istringstream in(log());
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line))
        lines.push_back(line);
    std::string out;
    for (size_t i = lines.size() > max_lines ? lines.size() - max_lines : 0; i < lines.size(); ++i)
        out += lines[i] + "\n";
    return out;
}

std::string DiofsMount::sanitizer_report(size_t max_lines) const {
    std::istringstream in(log());
    std::string line, report;
    size_t lines = 0;
    // "==PID==ERROR: AddressSanitizer: ..." (ASan, LSan), "FILE:LINE:COL: runtime error: ..."
    // (UBSan), "WARNING: ThreadSanitizer: ..." (TSan).
    while (std::getline(in, line) && lines < max_lines) {
        if (lines == 0 && line.find("Sanitizer") == std::string::npos &&
            line.find("runtime error:") == std::string::npos)
            continue;
        report += line + "\n";
        ++lines;
    }
    return report;
}

size_t DiofsMount::count_stats_lines(long* last) const {
    std::ifstream in(log_path_);
    std::string line;
    size_t n = 0;
    static const std::string key = "stats: inodes=";
    while (std::getline(in, line)) {
        size_t at = line.find(key);
        if (at == std::string::npos)
            continue;
        ++n;
        *last = std::strtol(line.c_str() + at + key.size(), nullptr, 10);
    }
    return n;
}

std::optional<long> DiofsMount::inode_count(std::chrono::milliseconds timeout) {
    if (!daemon_alive())
        return std::nullopt;
    long value = -1;
    const size_t before = count_stats_lines(&value);
    if (::kill(pid_, SIGUSR1) != 0)
        return std::nullopt;
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (count_stats_lines(&value) > before)
            return value;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return std::nullopt;
}

void MountTest::SetUp() {
    DIOFS_REQUIRE_FUSE();
    ::umask(022);
    mount_ = std::make_unique<DiofsMount>(mount_options());
    std::string error = mount_->start();
    ASSERT_EQ(error, "") << "could not mount diofs";
}

void MountTest::TearDown() {
    if (!mount_)
        return;
    const bool daemon_survived = mount_->daemon_alive();
    std::string log = mount_->log_tail(60);
    if (HasFailure() || !daemon_survived)
        std::cerr << "---- diofs log (" << mount_->log_path() << ", last lines) ----\n"
                  << log << "---- end of diofs log ----\n";
    std::string problems = mount_->stop();
    EXPECT_TRUE(daemon_survived) << "the diofs daemon died during the test: "
                                 << mount_->exit_description();
    EXPECT_EQ(problems, "") << "teardown of the diofs mount was not clean";
}

}  // namespace diofs_test

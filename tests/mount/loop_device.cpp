#include "loop_device.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

extern char** environ;

namespace diofs_test {
namespace {

// The full name of `program` in PATH (and in sbin, where mkfs.* and losetup live and which a
// user's PATH may lack), or "" when there is none.
std::string lookup_program(const std::string& program) {
    if (program.find('/') != std::string::npos)
        return ::access(program.c_str(), X_OK) == 0 ? program : "";
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    dirs += ":/usr/sbin:/sbin:/usr/bin:/bin";
    std::istringstream in(dirs);
    std::string d;
    while (std::getline(in, d, ':')) {
        if (!d.empty() && ::access((d + "/" + program).c_str(), X_OK) == 0)
            return d + "/" + program;
    }
    return "";
}

bool in_path(const std::string& program) { return !lookup_program(program).empty(); }

std::string find_program(const std::string& program) {
    std::string found = lookup_program(program);
    return found.empty() ? program : found;
}

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r'))
        s.pop_back();
    return s;
}

}  // namespace

int run_command(const std::vector<std::string>& argv, std::string* output) {
    if (argv.empty())
        return -1;
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) {
        if (output)
            *output = std::string("pipe2: ") + std::strerror(errno);
        return -1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
    // Nothing else of the test (descriptors of files in a mount) goes to the child.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);

    std::vector<std::string> args = argv;
    std::vector<char*> cargv;
    for (auto& a : args)
        cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const std::string program = find_program(argv[0]);

    pid_t pid = -1;
    // The program takes SIGINT, SIGTERM and SIGPIPE as usual (the emergency teardown blocks the
    // first two in this thread and ignores the third, and a spawned program would inherit both).
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none, pipe;
    sigemptyset(&none);
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &pipe);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rv = ::posix_spawn(&pid, program.c_str(), &actions, &attributes, cargv.data(), environ);
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipefd[1]);
    if (rv != 0) {
        ::close(pipefd[0]);
        if (output)
            *output = "cannot run " + argv[0] + ": " + std::strerror(rv);
        return -1;
    }
    std::string out;
    char buf[4096];
    while (true) {
        ssize_t n = ::read(pipefd[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(pipefd[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (output)
        *output = out;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (output)
        *output += "\n" + argv[0] + " was killed by signal " + std::to_string(WTERMSIG(status));
    return -1;
}

std::optional<std::string> loop_unavailable_reason(const std::string& fstype) {
    if (::geteuid() != 0)
        return std::string("loop devices need root");
    if (::access("/dev/loop-control", R_OK | W_OK) != 0)
        return std::string("/dev/loop-control: ") + std::strerror(errno);
    if (!in_path("losetup"))
        return std::string("losetup is not installed");
    if (!in_path("mkfs." + fstype))
        return "mkfs." + fstype + " is not installed";
    return std::nullopt;
}

LoopFilesystem::LoopFilesystem() : LoopFilesystem(Config{}) {}
LoopFilesystem::LoopFilesystem(Config config) : config_(std::move(config)) {}

LoopFilesystem::~LoopFilesystem() {
    std::string problems = teardown();
    if (!problems.empty())
        std::cerr << "[loop filesystem teardown] " << problems << "\n";
}

std::string LoopFilesystem::setup() {
    if (!dir_.empty())
        return "setup() called twice";
    if (auto why = loop_unavailable_reason(config_.fstype))
        return *why;
    dir_ = make_temporary_directory("loop");
    if (dir_.empty())
        return std::string("mkdtemp: ") + std::strerror(errno);
    emergency_ = EmergencyTeardown(config_.fstype + " loop filesystem in " + dir_,
                                   [this] { return teardown(); }, dir_);
    image_ = dir_ + "/image";
    mountpoint_ = dir_ + "/fs";
    auto fail = [&](const std::string& why) {
        std::string undo = teardown();
        return undo.empty() ? why : why + " (and undoing it: " + undo + ")";
    };
    if (::mkdir(mountpoint_.c_str(), 0755) != 0)
        return fail("mkdir " + mountpoint_ + ": " + std::strerror(errno));
    {
        int fd = ::open(image_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return fail("cannot create " + image_ + ": " + std::strerror(errno));
        int rv = ::ftruncate(fd, static_cast<off_t>(config_.image_bytes));
        int err = errno;
        ::close(fd);
        if (rv != 0)
            return fail("ftruncate " + image_ + ": " + std::strerror(err));
    }

    std::string out;
    int status = run_command({"losetup", "--find", "--show", "--sector-size",
                              std::to_string(config_.sector_size), image_},
                             &out);
    out = trim(out);
    if (status == 0 && out.rfind("/dev/loop", 0) == 0 && out.find('\n') == std::string::npos)
        device_ = out;
    if (device_.empty()) {
        // Attached after all, and the name got lost? Only devices backed by our own image.
        std::string listed;
        if (run_command({"losetup", "--noheadings", "--output", "NAME", "--associated", image_},
                        &listed) == 0) {
            listed = trim(listed);
            if (listed.rfind("/dev/loop", 0) == 0 && listed.find('\n') == std::string::npos)
                device_ = listed;
        }
        return fail("losetup --find --show --sector-size " + std::to_string(config_.sector_size) +
                    " failed (status " + std::to_string(status) + "): " + out);
    }

    std::vector<std::string> mkfs;
    if (config_.fstype == "xfs")
        mkfs = {"mkfs.xfs", "-q", "-f", device_};
    else if (config_.fstype == "ext4")
        mkfs = {"mkfs.ext4", "-q", "-F", device_};
    else
        return fail("unsupported filesystem type " + config_.fstype);
    status = run_command(mkfs, &out);
    if (status != 0)
        return fail(mkfs[0] + " " + device_ + " failed (status " + std::to_string(status) +
                    "): " + trim(out));

    if (::mount(device_.c_str(), mountpoint_.c_str(), config_.fstype.c_str(), 0, nullptr) != 0)
        return fail("mount " + device_ + " on " + mountpoint_ + ": " + std::strerror(errno));
    mounted_ = true;
    ::chmod(mountpoint_.c_str(), 0755);
    return "";
}

// The device still has our image behind it (sysfs names the backing file; a detached device
// has none). Never detach a device that another test attached after ours went away.
bool LoopFilesystem::device_is_ours() const {
    if (device_.rfind("/dev/", 0) != 0)
        return false;
    std::ifstream in("/sys/block/" + device_.substr(5) + "/loop/backing_file");
    std::string backing;
    if (!std::getline(in, backing))
        return false;
    backing = trim(backing);
    const std::string deleted = " (deleted)";
    if (backing.size() > deleted.size() &&
        backing.compare(backing.size() - deleted.size(), deleted.size(), deleted) == 0)
        backing.resize(backing.size() - deleted.size());
    return backing == image_;
}

std::string LoopFilesystem::teardown() {
    emergency_.reset();
    if (torn_down_ || dir_.empty())
        return "";
    torn_down_ = true;
    std::string problems;
    auto note = [&](const std::string& p) { problems += (problems.empty() ? "" : "; ") + p; };

    if (mounted_) {
        bool done = false;
        int error = 0;
        for (int attempt = 0; attempt < 100; ++attempt) {
            if (::umount2(mountpoint_.c_str(), UMOUNT_NOFOLLOW) == 0) {
                done = true;
                break;
            }
            error = errno;
            if (error != EBUSY)
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(30));
        }
        if (!done) {
            note("umount " + mountpoint_ + " failed (" + std::strerror(error) +
                 "): unmounted lazily");
            ::umount2(mountpoint_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
        }
        mounted_ = false;
    }

    if (!device_.empty()) {
        bool detached = false;
        std::string out;
        for (int attempt = 0; attempt < 50 && device_is_ours(); ++attempt) {
            if (run_command({"losetup", "--detach", device_}, &out) == 0) {
                detached = true;
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        if (!detached && device_is_ours())
            note("losetup --detach " + device_ + " failed: " + trim(out));
    }

    if (!image_.empty() && ::unlink(image_.c_str()) != 0 && errno != ENOENT)
        note("unlink " + image_ + ": " + std::strerror(errno));
    if (!mountpoint_.empty() && ::rmdir(mountpoint_.c_str()) != 0 && errno != ENOENT)
        note("rmdir " + mountpoint_ + ": " + std::strerror(errno));
    if (::rmdir(dir_.c_str()) != 0 && errno != ENOENT)
        note("rmdir " + dir_ + ": " + std::strerror(errno));
    return problems;
}

}  // namespace diofs_test

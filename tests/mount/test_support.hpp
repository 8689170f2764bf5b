#pragma once
// Small helpers shared by the mount tests: running as uid 65534, outcomes of system calls (value
// and errno), owned descriptors, whole-file reads and writes, and comparisons of struct stat.

#include "mount_fixture.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace diofs_test {

inline constexpr uid_t kNobody = 65534;

// Runs `body` in a child process as uid/gid 65534 (no supplementary groups); the child's exit
// status is `body`'s return value (0: all well; otherwise a code the test names). -1 when the
// child could not run or was killed.
inline int as_nobody(const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0)
            ::_exit(100);
        ::_exit(body());
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

// What a system call did: its return value and, when it failed, errno (0 otherwise).
struct Outcome {
    long long rv = 0;
    int err = 0;
    bool ok() const { return rv >= 0; }
    friend bool operator==(const Outcome& a, const Outcome& b) {
        return a.rv == b.rv && a.err == b.err;
    }
};

inline std::ostream& operator<<(std::ostream& os, const Outcome& o) {
    if (o.rv < 0)
        return os << "failed with " << errno_name(o.err);
    return os << "returned " << o.rv;
}

// Runs `f` (a call returning a number, negative on failure with errno set) and keeps errno.
template <typename F>
Outcome capture(F&& f) {
    errno = 0;
    long long rv = static_cast<long long>(f());
    int err = errno;
    return Outcome{rv, rv < 0 ? err : 0};
}

// base + "/" + rel.
inline std::string P(const std::string& base, const std::string& rel) { return base + "/" + rel; }

// A test name for a mount's options: "Plain" for none, else each option capitalised, joined
// ({"dbopt", "strict"}: "DboptStrict"; characters a test name cannot hold are dropped).
inline std::string options_name(const ::testing::TestParamInfo<std::vector<std::string>>& p) {
    std::string name;
    for (const std::string& option : p.param)
        for (size_t i = 0; i < option.size(); ++i)
            if (std::isalnum(static_cast<unsigned char>(option[i])))
                name += i == 0 ? static_cast<char>(std::toupper(static_cast<unsigned char>(option[i])))
                               : option[i];
    return name.empty() ? "Plain" : name;
}

// For open() compared in two places: the descriptors differ, so a success counts as 0 (and the
// descriptor is closed), a failure as -1 with errno.
inline int opened(int fd) {
    if (fd < 0)
        return -1;
    ::close(fd);
    return 0;
}

inline Outcome success(long long rv = 0) { return Outcome{rv, 0}; }
inline Outcome failure(int err) { return Outcome{-1, err}; }

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { reset(); }
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    // Closes now and tells how close() went.
    Outcome close() { return capture([&] { return ::close(std::exchange(fd_, -1)); }); }
    void reset() {
        if (fd_ >= 0)
            ::close(std::exchange(fd_, -1));
    }

private:
    int fd_ = -1;
};

// The whole content of a file, or nothing (errno kept) when it cannot be read.
inline bool read_whole(const std::string& path, std::string* out) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    out->clear();
    // Room for the whole file at once: growing by doubling copied each file several times over,
    // most of the differential tests' own CPU time.
    struct stat st;
    if (::fstat(fd, &st) == 0 && st.st_size > 0)
        out->reserve(static_cast<size_t>(st.st_size) + 1);
    char buf[1 << 16];
    while (true) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            int err = errno;
            ::close(fd);
            errno = err;
            return false;
        }
        if (n == 0)
            break;
        out->append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return true;
}

inline std::string read_whole(const std::string& path) {
    std::string s;
    if (!read_whole(path, &s))
        return "<unreadable: " + errno_name(errno) + ">";
    return s;
}

// Creates or replaces `path` with `data`; returns 0 or -1 with errno.
inline int write_whole(const std::string& path, const std::string& data, mode_t mode = 0644) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -1;
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n <= 0) {
            int err = errno;
            ::close(fd);
            errno = err;
            return -1;
        }
        done += static_cast<size_t>(n);
    }
    return ::close(fd);
}

// `n` bytes from an `Engine` (std::mt19937, std::mt19937_64...) seeded with `seed`: the low
// byte of each number it draws.
template <typename Engine>
std::string random_bytes_from(size_t n, typename Engine::result_type seed) {
    Engine rng(seed);
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(rng());
    return s;
}

inline std::string octal(unsigned v) {
    std::ostringstream s;
    s << "0" << std::oct << v;
    return s.str();
}

// The fields that pass through diofs unchanged, in words where they differ ("" when equal).
// Times are compared only when `times` is set (where the test set them explicitly).
inline std::string stat_differences(const struct stat& m, const struct stat& r, bool times = false) {
    std::ostringstream d;
    if (m.st_mode != r.st_mode)
        d << " mode " << octal(m.st_mode) << " vs " << octal(r.st_mode) << ";";
    if (m.st_nlink != r.st_nlink)
        d << " nlink " << m.st_nlink << " vs " << r.st_nlink << ";";
    if (m.st_uid != r.st_uid)
        d << " uid " << m.st_uid << " vs " << r.st_uid << ";";
    if (m.st_gid != r.st_gid)
        d << " gid " << m.st_gid << " vs " << r.st_gid << ";";
    if (m.st_size != r.st_size)
        d << " size " << m.st_size << " vs " << r.st_size << ";";
    if (m.st_rdev != r.st_rdev)
        d << " rdev " << m.st_rdev << " vs " << r.st_rdev << ";";
    if (times) {
        if (m.st_atim.tv_sec != r.st_atim.tv_sec || m.st_atim.tv_nsec != r.st_atim.tv_nsec)
            d << " atime " << m.st_atim.tv_sec << "." << m.st_atim.tv_nsec << " vs "
              << r.st_atim.tv_sec << "." << r.st_atim.tv_nsec << ";";
        if (m.st_mtim.tv_sec != r.st_mtim.tv_sec || m.st_mtim.tv_nsec != r.st_mtim.tv_nsec)
            d << " mtime " << m.st_mtim.tv_sec << "." << m.st_mtim.tv_nsec << " vs "
              << r.st_mtim.tv_sec << "." << r.st_mtim.tv_nsec << ";";
    }
    return d.str();
}

// The names in a directory (without "." and ".."), mapped to their d_type; nothing and errno
// set when it cannot be listed.
inline bool list_dir(const std::string& path, std::map<std::string, unsigned char>* out) {
    DIR* d = ::opendir(path.c_str());
    if (!d)
        return false;
    out->clear();
    while (true) {
        errno = 0;
        dirent* e = ::readdir(d);
        if (!e)
            break;
        if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0)
            continue;
        (*out)[e->d_name] = e->d_type;
    }
    int err = errno;
    ::closedir(d);
    errno = err;
    return err == 0;
}

}  // namespace diofs_test

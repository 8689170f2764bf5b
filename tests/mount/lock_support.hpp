#pragma once
// What the lock tests share: taking a record lock, telling "held elsewhere" from other errors,
// trying again while a lock goes at a release the kernel sends without waiting, and running a
// piece of a test as another process (another lock owner).

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>

namespace diofs_test {

// fcntl `cmd` (F_SETLK, F_SETLKW, F_OFD_SETLK, F_OFD_SETLKW) of [start, start + len) as `type`:
// 0 or the errno.
inline int posix_lock(int fd, short type, off_t start, off_t len, int cmd = F_SETLK) {
    struct flock l{};
    l.l_type = type;
    l.l_whence = SEEK_SET;
    l.l_start = start;
    l.l_len = len;
    return ::fcntl(fd, cmd, &l) == 0 ? 0 : errno;
}

inline bool held_elsewhere(int err) { return err == EAGAIN || err == EACCES || err == EWOULDBLOCK; }

// `attempt` (0 or an errno) tried for up to 5 s while it answers "held elsewhere": a flock()
// or an OFD lock goes when the kernel releases the open file after its last close, which FUSE
// sends without waiting for it (RELEASE is asynchronous), so the holder's close() may return a
// moment before. The last answer.
inline int soon(const std::function<int()>& attempt) {
    int err = 0;
    for (int i = 0; i < 500; ++i) {
        err = attempt();
        if (!held_elsewhere(err))
            return err;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return err;
}

// flock(fd, op | LOCK_NB), as soon() tries it.
inline int flock_soon(int fd, int op) {
    return soon([&] { return ::flock(fd, op | LOCK_NB) == 0 ? 0 : errno; });
}

// Runs `body` in a child process and returns its exit status (or 128 + signal).
inline int in_child(const std::function<int()>& body) {
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(body());
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace diofs_test

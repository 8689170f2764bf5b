#include "diofs/daemon_lock.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace diofs {

const char* const DaemonLock::kDirectory = DIOFS_LOCK_DIRECTORY;

std::string DaemonLock::path_for(dev_t mount_device, const std::string& directory) {
    return directory + "/" + std::to_string(::major(mount_device)) + ":" +
           std::to_string(::minor(mount_device)) + ".lock";
}

std::optional<DaemonLock> DaemonLock::take(dev_t mount_device, const std::string& directory,
                                           std::chrono::milliseconds patience) {
    const std::string path = path_for(mount_device, directory);
    if (::mkdir(directory.c_str(), 0755) != 0 && errno != EEXIST) {
        spdlog::debug("no unmount lock: cannot create {}: {}", directory, std::strerror(errno));
        return std::nullopt;
    }
    const auto deadline = std::chrono::steady_clock::now() + patience;
    for (;;) {
        UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
        if (!fd) {
            spdlog::debug("no unmount lock: cannot open {}: {}", path, std::strerror(errno));
            return std::nullopt;
        }
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) {
            // The previous holder removes the file before it lets go: the lock counts only on
            // the file that is still there.
            struct stat held, named;
            if (::fstat(fd.get(), &held) == 0 && ::stat(path.c_str(), &named) == 0 &&
                held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
                DaemonLock lock(path, std::move(fd));
                lock.record_pid();
                return lock;
            }
            continue;
        }
        if (errno != EWOULDBLOCK) {
            spdlog::debug("no unmount lock: flock {}: {}", path, std::strerror(errno));
            return std::nullopt;
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            spdlog::warn("{} is still locked by another process after {} ms: umount of this "
                         "mount will not wait for the daemon to exit",
                         path, patience.count());
            return std::nullopt;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

DaemonLock::~DaemonLock() {
    if (fd_)
        ::unlink(path_.c_str());
}

void DaemonLock::record_pid() const {
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_.get(), 0) != 0 ||
        ::pwrite(fd_.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
        spdlog::debug("cannot write the PID into {}: {}", path_, std::strerror(errno));
}

}  // namespace diofs

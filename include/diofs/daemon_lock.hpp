#pragma once
// The lock that umount.fuse.diofs waits on: /run/diofs/MAJOR:MINOR.lock, where MAJOR:MINOR is
// the device of the mount (the FUSE superblock's, as /proc/self/mountinfo shows it).
//
// umount(2) of a FUSE mount returns as soon as the kernel has let go of the mount; the daemon
// then sees its connection end, writes out what it holds and closes its backing descriptors
// some time later. Until it has, the filesystem under the backing directory is busy, so
// `umount MNT && umount BACKING` failed now and then. The daemon takes this lock (flock,
// exclusive) once its mount exists, before it forks into the background: the child inherits
// the open file description, so the lock is held from before mount(8) returns until the
// daemon's last descriptor closes. It is let go last of all (removed, then closed, after every
// backing descriptor), or by the kernel when the process ends however it ends (SIGKILL
// included). The helper reads the device from /proc/self/mountinfo, opens the file, unmounts,
// and waits for a shared lock on it.
//
// A lock and not a PID: the daemon's PID changes when it forks into the background after the
// mount exists, a PID can be reused, and a file that outlives a killed daemon is harmless: no
// one holds its lock. Only root can write /run/diofs; a daemon that is not root goes without
// (umount then returns as before).

#include "diofs/unique_fd.hpp"

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

namespace diofs {

class DaemonLock {
public:
    // /run/diofs (DIOFS_LOCK_DIRECTORY in CMakeLists.txt, which umount.fuse.diofs is given too).
    static const char* const kDirectory;

    // DIRECTORY/MAJOR:MINOR.lock.
    static std::string path_for(dev_t mount_device, const std::string& directory = kDirectory);

    // Creates DIRECTORY (0755) if missing and takes the lock of the mount on `mount_device`.
    // The previous daemon of a mount with the same device number (numbers are reused once a
    // mount is gone) may still hold it while it exits: waits for it up to `patience`. Empty,
    // logged at debug level (no room for it is not an error: a daemon that is not root) or as
    // a warning (still held after `patience`), when it cannot.
    static std::optional<DaemonLock> take(
        dev_t mount_device, const std::string& directory = kDirectory,
        std::chrono::milliseconds patience = std::chrono::seconds(5));

    DaemonLock(DaemonLock&&) noexcept = default;
    DaemonLock& operator=(DaemonLock&&) noexcept = default;
    DaemonLock(const DaemonLock&) = delete;
    DaemonLock& operator=(const DaemonLock&) = delete;
    // Removes the file, then lets go of the lock: a helper that opened the file before still
    // waits for the lock, one that comes later finds nothing to wait for.
    ~DaemonLock();

    // Writes the PID of the calling process into the file (for the helper's messages): called
    // again by the process that serves the mount, after the fork into the background.
    void record_pid() const;

    const std::string& path() const { return path_; }

private:
    DaemonLock(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
    std::string path_;
    UniqueFd fd_;
};

}  // namespace diofs

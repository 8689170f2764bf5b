#include "diofs/syscalls.hpp"

#include <sys/file.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

namespace diofs::sys {
namespace {

// Every wrapper ends here: a negative libc result becomes -errno.
template <typename T>
T result(T rv) noexcept {
    return rv < 0 ? static_cast<T>(-errno) : rv;
}

}  // namespace

std::string proc_fd_path(int fd) {
    char path[32];
    std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return path;
}

int openat(int dirfd, const char* name, int flags, mode_t mode) {
    return result(::openat(dirfd, name, flags | O_CLOEXEC, mode));
}

int open_via_proc(int path_fd, int flags) {
    // O_NOFOLLOW would refuse the magic link itself; the link jumps to the inode, not a path.
    return result(::open(proc_fd_path(path_fd).c_str(), (flags & ~O_NOFOLLOW) | O_CLOEXEC));
}

int fstat(int fd, struct stat* st) { return result(::fstat(fd, st)); }

int stat_at(int dirfd, const char* name, struct stat* st) {
    return result(::fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW));
}

int stat_path_fd(int path_fd, struct stat* st) {
    return result(::fstatat(path_fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
}

int cached_device_at(int dirfd, const char* name, dev_t* dev) {
    struct statx stx;
    int flags = AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC | (*name ? 0 : AT_EMPTY_PATH);
    int rv = result(::statx(dirfd, name, flags, 0, &stx));
    if (rv == 0)
        *dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
    return rv;
}

int fchmod_path_fd(int path_fd, mode_t mode) {
    return result(::chmod(proc_fd_path(path_fd).c_str(), mode));
}

int fchmod(int fd, mode_t mode) { return result(::fchmod(fd, mode)); }

int fchown_path_fd(int path_fd, uid_t uid, gid_t gid) {
    return result(::fchownat(path_fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
}

int ftruncate(int fd, off_t size) { return result(::ftruncate(fd, size)); }

int truncate_path_fd(int path_fd, off_t size) {
    return result(::truncate(proc_fd_path(path_fd).c_str(), size));
}

int futimens(int fd, const struct timespec times[2]) { return result(::futimens(fd, times)); }

int utimens_path_fd(int path_fd, const struct timespec times[2]) {
    return result(::utimensat(path_fd, "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
}

ssize_t readlink_path_fd(int path_fd, char* buf, size_t size) {
    return result(::readlinkat(path_fd, "", buf, size));
}

int mknodat(int dirfd, const char* name, mode_t mode, dev_t rdev) {
    return result(::mknodat(dirfd, name, mode, rdev));
}

int mkdirat(int dirfd, const char* name, mode_t mode) {
    return result(::mkdirat(dirfd, name, mode));
}

int symlinkat(const char* target, int dirfd, const char* name) {
    return result(::symlinkat(target, dirfd, name));
}

int unlinkat(int dirfd, const char* name, int flags) {
    return result(::unlinkat(dirfd, name, flags));
}

int renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
              unsigned int flags) {
    return result(::renameat2(olddirfd, oldname, newdirfd, newname, flags));
}

int link_path_fd(int path_fd, int newdirfd, const char* newname) {
    // linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, which a caller's credentials
    // do not carry; following the /proc magic link needs nothing more than the backing
    // filesystem itself would ask (fs.protected_hardlinks included).
    return result(
        ::linkat(AT_FDCWD, proc_fd_path(path_fd).c_str(), newdirfd, newname, AT_SYMLINK_FOLLOW));
}

int fstatvfs(int fd, struct statvfs* st) { return result(::fstatvfs(fd, st)); }

int fstatfs(int fd, struct statfs* st) { return result(::fstatfs(fd, st)); }

int fsync(int fd, bool datasync) { return result(datasync ? ::fdatasync(fd) : ::fsync(fd)); }

ssize_t pread(int fd, char* buf, size_t length, off_t offset) {
    return result(::pread(fd, buf, length, offset));
}

ssize_t pwrite(int fd, const char* buf, size_t length, off_t offset) {
    return result(::pwrite(fd, buf, length, offset));
}

int fallocate(int fd, int mode, off_t offset, off_t length) {
    return result(::fallocate(fd, mode, offset, length));
}

ssize_t copy_file_range(int fd_in, off_t* off_in, int fd_out, off_t* off_out, size_t len,
                        unsigned int flags) {
    return result(::copy_file_range(fd_in, off_in, fd_out, off_out, len, flags));
}

off_t lseek(int fd, off_t offset, int whence) { return result(::lseek(fd, offset, whence)); }

ssize_t getxattr_path_fd(int path_fd, const char* name, void* value, size_t size) {
    return result(::getxattr(proc_fd_path(path_fd).c_str(), name, value, size));
}

int fcntl_lock(int fd, int cmd, struct flock* lock) { return result(::fcntl(fd, cmd, lock)); }

int flock(int fd, int op) { return result(::flock(fd, op)); }

int status_flags(int fd) { return result(::fcntl(fd, F_GETFL)); }

ssize_t listxattr_path_fd(int path_fd, char* list, size_t size) {
    return result(::listxattr(proc_fd_path(path_fd).c_str(), list, size));
}

int setxattr_path_fd(int path_fd, const char* name, const void* value, size_t size, int flags) {
    return result(::setxattr(proc_fd_path(path_fd).c_str(), name, value, size, flags));
}

int removexattr_path_fd(int path_fd, const char* name) {
    return result(::removexattr(proc_fd_path(path_fd).c_str(), name));
}

namespace {

// struct file_handle ends in a flexible array: room for the largest handle, suitably aligned.
struct HandleBuffer {
    alignas(file_handle) unsigned char storage[sizeof(file_handle) + MAX_HANDLE_SZ];
    file_handle* get() { return reinterpret_cast<file_handle*>(storage); }
};

}  // namespace

int name_to_handle(int path_fd, int& type, std::vector<unsigned char>& bytes) {
    HandleBuffer buffer;
    file_handle* handle = buffer.get();
    handle->handle_bytes = MAX_HANDLE_SZ;
    int mount_id;
    if (::name_to_handle_at(path_fd, "", handle, &mount_id, AT_EMPTY_PATH) != 0)
        return -errno;
    type = handle->handle_type;
    bytes.assign(handle->f_handle, handle->f_handle + handle->handle_bytes);
    return 0;
}

int open_by_handle(int mount_fd, int type, const std::vector<unsigned char>& bytes, int flags) {
    if (bytes.size() > MAX_HANDLE_SZ)
        return -EINVAL;
    HandleBuffer buffer;
    file_handle* handle = buffer.get();
    handle->handle_bytes = static_cast<unsigned>(bytes.size());
    handle->handle_type = type;
    std::memcpy(handle->f_handle, bytes.data(), bytes.size());
    // ENOMEM can mean "gone" too: when the handle's inode was deleted and ext4 is giving its
    // number to a new file at this moment, the inode cache refuses the lookup of an inode still
    // being created (I_CREATING), and ext4_iget reports that as ENOMEM. Once the new inode is
    // complete, its generation tells it apart: ESTALE. (MountLookupForget.ConcurrentNameChurn
    // under load met it in 3 of 100 runs, and each time the retry after 1 ms got ESTALE.) So
    // ENOMEM is believed only when it lasts (31 ms: a create preempted on a loaded machine).
    int fd = result(::open_by_handle_at(mount_fd, handle, flags | O_CLOEXEC));
    for (auto pause = std::chrono::milliseconds(1); fd == -ENOMEM && pause.count() <= 16;
         pause *= 2) {
        std::this_thread::sleep_for(pause);
        fd = result(::open_by_handle_at(mount_fd, handle, flags | O_CLOEXEC));
    }
    return fd;
}

}  // namespace diofs::sys

#pragma once
// Thin wrappers over the system calls the daemon makes. Each returns a count or a descriptor
// (>= 0) on success and -errno on failure, never throws, and never retries: the one
// convention inside diofs. FUSE handlers turn the result into a reply once, at the end.
// Retrying is separate: restarting() for EINTR, transfer_all (io/partial_transfers.hpp) for
// short counts.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <string>
#include <vector>

namespace diofs::sys {

// `call` (a wrapper below: a count, a descriptor or 0, or -errno) made again for as long as a
// signal interrupts it (-EINTR), as SA_RESTART would.
template <typename Call>
auto restarting(Call&& call) {
    for (;;) {
        const auto rv = call();
        if (rv != -EINTR)
            return rv;
    }
}

// The path through which the kernel reopens what an O_PATH descriptor points at
// ("/proc/self/fd/N"). Used where no *at() call accepts an O_PATH descriptor: open, chmod,
// truncate, the xattr calls and link as a user without CAP_DAC_READ_SEARCH.
std::string proc_fd_path(int fd);

int openat(int dirfd, const char* name, int flags, mode_t mode = 0);
int open_via_proc(int path_fd, int flags);
int fstat(int fd, struct stat* st);
int stat_at(int dirfd, const char* name, struct stat* st);  // never follows a symlink
int stat_path_fd(int path_fd, struct stat* st);
// The device of `name` in `dirfd` (of `dirfd` itself when `name` is empty), never following a
// symlink, as the kernel has it at hand: statx with no attribute asked for and
// AT_STATX_DONT_SYNC, which never sends a FUSE filesystem a request (fs/fuse/dir.c,
// fuse_update_get_attr: no request mask, or DONT_SYNC, means no GETATTR). So it is safe on the
// daemon's own mount, even before the session loop runs.
int cached_device_at(int dirfd, const char* name, dev_t* dev);
int fchmod_path_fd(int path_fd, mode_t mode);
int fchmod(int fd, mode_t mode);
int fchown_path_fd(int path_fd, uid_t uid, gid_t gid);
int ftruncate(int fd, off_t size);
int truncate_path_fd(int path_fd, off_t size);
int futimens(int fd, const struct timespec times[2]);
int utimens_path_fd(int path_fd, const struct timespec times[2]);
ssize_t readlink_path_fd(int path_fd, char* buf, size_t size);
int mknodat(int dirfd, const char* name, mode_t mode, dev_t rdev);
int mkdirat(int dirfd, const char* name, mode_t mode);
int symlinkat(const char* target, int dirfd, const char* name);
int unlinkat(int dirfd, const char* name, int flags);
int renameat2(int olddirfd, const char* oldname, int newdirfd, const char* newname,
              unsigned int flags);
int link_path_fd(int path_fd, int newdirfd, const char* newname);
int fstatvfs(int fd, struct statvfs* st);
int fstatfs(int fd, struct statfs* st);
int fsync(int fd, bool datasync);
// One call each: a count short of `length` is the caller's to handle (transfer_all in
// io/partial_transfers.hpp), and so is -EINTR (restarting).
ssize_t pread(int fd, char* buf, size_t length, off_t offset);
ssize_t pwrite(int fd, const char* buf, size_t length, off_t offset);
int fallocate(int fd, int mode, off_t offset, off_t length);
ssize_t copy_file_range(int fd_in, off_t* off_in, int fd_out, off_t* off_out, size_t len,
                        unsigned int flags);
off_t lseek(int fd, off_t offset, int whence);
int fcntl_lock(int fd, int cmd, struct flock* lock);  // F_OFD_GETLK, F_OFD_SETLK...
int flock(int fd, int op);
int status_flags(int fd);  // F_GETFL
ssize_t getxattr_path_fd(int path_fd, const char* name, void* value, size_t size);
ssize_t listxattr_path_fd(int path_fd, char* list, size_t size);
int setxattr_path_fd(int path_fd, const char* name, const void* value, size_t size, int flags);
int removexattr_path_fd(int path_fd, const char* name);
// The file handle of what `path_fd` points at (name_to_handle_at with AT_EMPTY_PATH): its type
// and bytes. -EOPNOTSUPP where the filesystem gives none.
int name_to_handle(int path_fd, int& type, std::vector<unsigned char>& bytes);
// Opens a handle of name_to_handle; `mount_fd` is any descriptor of the same filesystem that
// is not O_PATH. Needs CAP_DAC_READ_SEARCH. -ESTALE once the inode is gone (also when ext4
// briefly says ENOMEM for it: see there).
int open_by_handle(int mount_fd, int type, const std::vector<unsigned char>& bytes, int flags);

}  // namespace diofs::sys

// getattr, setattr, readlink and statfs.

#include "diofs/caller_credentials.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

#include <climits>

namespace diofs::ops {
namespace {

// The attributes of an inode, through the open file when the kernel names one (cheaper, and
// right for a file that was unlinked while open), else through `path_fd`.
int stat_inode(const PathFd& path_fd, const fuse_file_info* fi, struct stat* st) {
    return fi ? sys::fstat(open_file_of(fi).fd.get(), st) : sys::stat_path_fd(path_fd.get(), st);
}

// What the kernel is told of the inode's attributes (Filesystem::stat_shown).
int stat_shown(Filesystem& fs, Inode& inode, const PathFd& path_fd, const fuse_file_info* fi,
               struct stat& st) {
    return fs.stat_shown(inode, [&](struct stat& s) { return stat_inode(path_fd, fi, &s); }, st);
}

// Answers attributes of `inode`, with its timeout; then asks the kernel to forget them again
// where a writer of the file must still ask (Filesystem::must_ask_again).
void reply_attributes(fuse_req_t req, Inode& inode, const struct stat& st) {
    auto& fs = filesystem_of(req);
    const fuse_ino_t ino = fs.ino_of(inode);
    fs.reply_with_attributes({&ino, 1},
                             [&] { return fuse_reply_attr(req, &st, fs.attr_timeout(inode)); });
}

// The inode's path descriptor, unless the kernel names an open file (which serves instead).
int path_fd_unless_open(Filesystem& fs, Inode& inode, const fuse_file_info* fi, PathFd& out) {
    return fi ? 0 : fs.path_fd(inode, out);
}

void getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "getattr", [&] {
        auto& fs = filesystem_of(req);
        Inode& inode = fs.inode(ino);
        // The writeback window: a stat by name of a file changed around the mount gets a new
        // inode (Filesystem::superseded_around); a GETATTR through a file open in the window
        // (the kernel's, before a write() after a page drop) first makes room ahead of it.
        if (!fi && fs.superseded_around(inode))
            return reply_status(req, -ESTALE);
        if (fi) {
            if (int room = fs.reserve_window(Credentials::of(req), inode, open_file_of(fi),
                                             inode.view.size());
                room < 0)
                return reply_status(req, room);
        }
        PathFd path_fd;
        struct stat st;
        int rv = path_fd_unless_open(fs, inode, fi, path_fd);
        if (rv == 0)
            rv = stat_shown(fs, inode, path_fd, fi, st);
        if (rv < 0)
            return reply_status(req, rv);
        reply_attributes(req, inode, st);
    });
}

timespec time_to_set(int valid, int set_bit, int now_bit, const timespec& value) {
    if (valid & now_bit)
        return {0, UTIME_NOW};
    if (valid & set_bit)
        return value;
    return {0, UTIME_OMIT};
}

// Applies each change the kernel asks for, as the caller, in the order chmod, chown,
// truncate, utimes; stops at the first error, which is what the caller sees.
int apply_setattr(const PathFd& inode_fd, const struct stat& attr, int valid,
                  const fuse_file_info* fi, FileChange& change) {
    const int path_fd = inode_fd.get();
    const int file_fd = fi ? open_file_of(fi).fd.get() : -1;
    int rv = 0;
    if (valid & FUSE_SET_ATTR_MODE)
        rv = fi ? sys::fchmod(file_fd, attr.st_mode) : sys::fchmod_path_fd(path_fd, attr.st_mode);
    if (rv == 0 && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
        uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr.st_uid : static_cast<uid_t>(-1);
        gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr.st_gid : static_cast<gid_t>(-1);
        rv = sys::fchown_path_fd(path_fd, uid, gid);
    }
    if (rv == 0 && (valid & FUSE_SET_ATTR_SIZE))
        rv = change.resize([&] {
            return fi ? sys::ftruncate(file_fd, attr.st_size)
                      : sys::truncate_path_fd(path_fd, attr.st_size);
        });
    if (rv == 0 && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                             FUSE_SET_ATTR_MTIME_NOW))) {
        const timespec times[2] = {
            time_to_set(valid, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, attr.st_atim),
            time_to_set(valid, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, attr.st_mtim)};
        rv = fi ? sys::futimens(file_fd, times) : sys::utimens_path_fd(path_fd, times);
    }
    return rv;
}

// True when `valid`/`attr` is the kernel clearing setuid/setgid bits for a caller who does not
// own the file: the kernel does that itself on write and truncate, and, because libfuse 3.14
// does not pass FUSE_HANDLE_KILLPRIV on to it, asks through setattr (with libfuse 3.18 the
// kernel is told that the daemon handles it, and never asks: see init() in operations.cpp).
// As the caller that chmod would fail (only the owner may chmod), yet natively it succeeds: it
// is the kernel's doing, not the caller's. A chmod() that the caller itself makes never looks
// like this here: with default_permissions the kernel refuses a non-owner's chmod before
// sending anything.
bool is_kernel_setid_clear(fuse_req_t req, const struct stat& now, const struct stat& attr,
                           int valid) {
    constexpr mode_t setid = S_ISUID | S_ISGID;
    if (!(valid & FUSE_SET_ATTR_MODE) || fuse_req_ctx(req)->uid == now.st_uid)
        return false;
    bool clears_some = (now.st_mode & ~attr.st_mode & setid) != 0;
    bool changes_nothing_else = ((now.st_mode ^ attr.st_mode) & ~setid & 07777) == 0;
    return clears_some && changes_nothing_else;
}

// Under the writeback window the kernel keeps the times of regular files and writes them back
// itself (fuse_write_inode, at a close and after writeback), as whoever closes or flushes: a
// writer who may write the file and does not own it may not set its times explicitly
// (utimensat), and its close would fail with EPERM. Such a SETATTR of explicit times only is
// applied as the daemon: one a program asks for was checked by the kernel before it was sent
// (default_permissions, always on: setattr_prepare lets only the owner set explicit times).
bool is_kernels_times(const Filesystem& fs, const Inode& inode, int valid) {
    constexpr int explicit_times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME;
    return fs.writeback() && inode.type == S_IFREG && (valid & FUSE_SET_ATTR_MTIME) &&
           (valid & ~explicit_times) == 0;
}

// setattr's work, between the pending writes going out and the reply: 0 with the new
// attributes in `st`, or -errno.
int change_attributes(fuse_req_t req, Inode& inode, struct stat& attr, int valid,
                      fuse_file_info* fi, struct stat& st) {
    auto& fs = filesystem_of(req);
    // chown needs the path descriptor even with an open file.
    PathFd path_fd;
    if (int rv = fs.path_fd(inode, path_fd); rv < 0)
        return rv;
    // Pending coalesced writes go out first: a truncate must cut them too, and times and
    // modes are set after the writes that came before. A truncate's pages are dropped after it.
    FileChange change = fs.change(inode, fi, (valid & FUSE_SET_ATTR_SIZE) != 0);
    int rv = stat_inode(path_fd, fi, &st);
    if (rv == 0 && is_kernel_setid_clear(req, st, attr, valid)) {
        rv = fi ? sys::fchmod(open_file_of(fi).fd.get(), attr.st_mode)
                : sys::fchmod_path_fd(path_fd.get(), attr.st_mode);
        valid &= ~FUSE_SET_ATTR_MODE;
    }
    if (rv == 0 && is_kernels_times(fs, inode, valid)) {
        rv = apply_setattr(path_fd, attr, valid, fi, change);
    } else if (rv == 0) {
        CallerCredentials as_caller(req);
        rv = apply_setattr(path_fd, attr, valid, fi, change);
    }
    if (rv == 0)
        rv = stat_shown(fs, inode, path_fd, fi, st);
    // The kernel applies the change to its own size and times too (KernelView).
    if (rv == 0 && fs.writeback() && inode.type == S_IFREG)
        inode.view.set(st, valid & FUSE_SET_ATTR_SIZE);
    return rv;
}

// Under the writeback window the kernel writes the times of a file back (fuse_write_inode)
// also after its last name is gone, and the daemon let go of it then (InodeTable::
// release_descriptor): such a SETATTR of times only is answered as done, with what is known of
// the file, or syncfs of the mount would fail with ESTALE. Whether it is one: `rv` -ESTALE.
bool times_of_a_removed_file(Filesystem& fs, const Inode& inode, int valid, const fuse_file_info* fi,
                             int rv) {
    constexpr int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                          FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
    return rv == -ESTALE && fs.writeback() && inode.type == S_IFREG && !fi &&
           (valid & ~times) == 0;
}

void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
    guarded(req, "setattr", [&] {
        auto& fs = filesystem_of(req);
        Inode& inode = fs.inode(ino);
        struct stat st;
        int rv = change_attributes(req, inode, *attr, valid, fi, st);
        if (times_of_a_removed_file(fs, inode, valid, fi, rv)) {
            st = *attr;
            st.st_mode = S_IFREG;  // its permissions are gone with it
            st.st_nlink = 0;
            st.st_size = static_cast<off_t>(inode.view.size());
            rv = 0;
        }
        if (rv < 0)
            return reply_status(req, rv);
        reply_attributes(req, inode, st);
    });
}

void readlink(fuse_req_t req, fuse_ino_t ino) {
    guarded(req, "readlink", [&] {
        auto& fs = filesystem_of(req);
        PathFd path_fd;
        if (int rv = fs.path_fd(fs.inode(ino), path_fd); rv < 0)
            return reply_status(req, rv);
        char target[PATH_MAX + 1];
        ssize_t n = sys::readlink_path_fd(path_fd.get(), target, sizeof target);
        if (n < 0)
            return reply_status(req, static_cast<int>(n));
        if (static_cast<size_t>(n) == sizeof target)
            return reply_status(req, -ENAMETOOLONG);
        target[n] = '\0';
        fuse_reply_readlink(req, target);
    });
}

void statfs(fuse_req_t req, fuse_ino_t ino) {
    guarded(req, "statfs", [&] {
        auto& fs = filesystem_of(req);
        PathFd path_fd;
        struct statvfs st;
        int rv = fs.path_fd(fs.inode(ino), path_fd);
        if (rv == 0)
            rv = sys::fstatvfs(path_fd.get(), &st);
        if (rv < 0)
            return reply_status(req, rv);
        fuse_reply_statfs(req, &st);
    });
}

}  // namespace

void add_attribute_operations(fuse_lowlevel_ops& ops) {
    ops.getattr = getattr;
    ops.setattr = setattr;
    ops.readlink = readlink;
    ops.statfs = statfs;
}

}  // namespace diofs::ops

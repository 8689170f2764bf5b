// Operations on names: lookup and forget, making and removing entries, rename and link.
// Each runs with the caller's credentials, relative to the parent's O_PATH descriptor, which
// is taken first, as the daemon (it may be reopened from a file handle: inode_table.hpp).

#include "diofs/caller_credentials.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

namespace diofs::ops {
namespace {

void lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "lookup", [&] {
        auto& fs = filesystem_of(req);
        PathFd dir;
        if (int rv = fs.path_fd(fs.inode(parent), dir); rv < 0)
            return reply_status(req, rv);
        CallerCredentials as_caller(req);
        fuse_entry_param e;
        int rv = fs.lookup(dir.get(), name, &e);
        if (rv < 0)
            return reply_status(req, rv);
        reply_entry(req, e);
    });
}

void forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    filesystem_of(req).forget(ino, nlookup);
    fuse_reply_none(req);
}

void forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    auto& fs = filesystem_of(req);
    for (size_t i = 0; i < count; ++i)
        fs.forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

// mknod, mkdir, symlink and link: make the entry as the caller (so it is theirs, and a setgid
// parent's group is inherited), under the caller's umask, then look it up for the kernel.
// (The body of a guarded handler.)
template <typename Make>
void make_entry_as_caller(fuse_req_t req, fuse_ino_t parent, const char* name, Make make) {
    auto& fs = filesystem_of(req);
    PathFd dir;
    if (int rv = fs.path_fd(fs.inode(parent), dir); rv < 0)
        return reply_status(req, rv);
    CallerCredentials as_caller(req);
    CallerUmask with_umask(req);
    int rv = make(dir.get(), with_umask);
    fuse_entry_param e;
    if (rv == 0)
        rv = fs.lookup(dir.get(), name, &e);
    if (rv < 0)
        return reply_status(req, rv);
    reply_entry(req, e);
}

template <typename Make>
void make_entry(fuse_req_t req, const char* op, fuse_ino_t parent, const char* name, Make make) {
    guarded(req, op, [&] { make_entry_as_caller(req, parent, name, make); });
}

void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
    make_entry(req, "mknod", parent, name, [&](int dirfd, const CallerUmask& umask) {
        return sys::mknodat(dirfd, name, umask.apply(mode), rdev);
    });
}

void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    make_entry(req, "mkdir", parent, name, [&](int dirfd, const CallerUmask& umask) {
        return sys::mkdirat(dirfd, name, umask.apply(mode));
    });
}

void symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
    make_entry(req, "symlink", parent, name, [&](int dirfd, const CallerUmask&) {
        return sys::symlinkat(target, dirfd, name);
    });
}

void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
    guarded(req, "link", [&] {
        auto& fs = filesystem_of(req);
        PathFd target;
        if (int rv = fs.path_fd(fs.inode(ino), target); rv < 0)
            return reply_status(req, rv);
        make_entry_as_caller(req, newparent, newname, [&](int dirfd, const CallerUmask&) {
            return sys::link_path_fd(target.get(), dirfd, newname);
        });
    });
}

// Removes `name` from `dirfd` with `remove` (as the caller), then lets go of what the daemon
// caches of the inode it named (Filesystem::after_removal): 0 or -errno. A name that cannot
// be looked at first is removed all the same (remove decides what the caller may do).
template <typename Remove>
int remove_name(Filesystem& fs, int dirfd, const char* name, Remove remove) {
    struct stat removed;
    const bool known = sys::stat_at(dirfd, name, &removed) == 0;
    int rv = remove();
    if (rv == 0 && known)
        fs.after_removal(removed);
    return rv;
}

void remove_entry(fuse_req_t req, const char* op, fuse_ino_t parent, const char* name,
                  int flags) {
    guarded(req, op, [&] {
        auto& fs = filesystem_of(req);
        PathFd dir;
        if (int rv = fs.path_fd(fs.inode(parent), dir); rv < 0)
            return reply_status(req, rv);
        CallerCredentials as_caller(req);
        reply_status(req, remove_name(fs, dir.get(), name,
                                      [&] { return sys::unlinkat(dir.get(), name, flags); }));
    });
}

void unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
    remove_entry(req, "unlink", parent, name, 0);
}

void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
    remove_entry(req, "rmdir", parent, name, AT_REMOVEDIR);
}

void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
            const char* newname, unsigned int flags) {
    guarded(req, "rename", [&] {
        auto& fs = filesystem_of(req);
        PathFd from, to;
        int rv = fs.path_fd(fs.inode(parent), from);
        if (rv == 0)
            rv = fs.path_fd(fs.inode(newparent), to);
        if (rv < 0)
            return reply_status(req, rv);
        CallerCredentials as_caller(req);
        auto move = [&] { return sys::renameat2(from.get(), name, to.get(), newname, flags); };
        // An exchange removes nothing; any other rename may replace `newname`.
        reply_status(req, (flags & RENAME_EXCHANGE) ? move()
                                                    : remove_name(fs, to.get(), newname, move));
    });
}

}  // namespace

void add_entry_operations(fuse_lowlevel_ops& ops) {
    ops.lookup = lookup;
    ops.forget = forget;
    ops.forget_multi = forget_multi;
    ops.mknod = mknod;
    ops.mkdir = mkdir;
    ops.symlink = symlink;
    ops.link = link;
    ops.unlink = unlink;
    ops.rmdir = rmdir;
    ops.rename = rename;
}

}  // namespace diofs::ops

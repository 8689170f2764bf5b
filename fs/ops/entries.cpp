// Operations on names: lookup and forget, making and removing entries, rename and link.
// Each runs with the caller's credentials, relative to the parent's O_PATH descriptor.

#include "diofs/caller_credentials.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

namespace diofs::ops {
namespace {

void lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, "lookup", [&] {
        auto& fs = filesystem_of(req);
        CallerCredentials as_caller(req);
        fuse_entry_param e;
        int rv = fs.lookup(fs.inode(parent), name, &e);
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
template <typename Make>
void make_entry(fuse_req_t req, const char* op, fuse_ino_t parent, const char* name, Make make) {
    guarded(req, op, [&] {
        auto& fs = filesystem_of(req);
        CallerCredentials as_caller(req);
        CallerUmask with_umask(req);
        Inode& dir = fs.inode(parent);
        int rv = make(dir.path_fd.get(), with_umask);
        fuse_entry_param e;
        if (rv == 0)
            rv = fs.lookup(dir, name, &e);
        if (rv < 0)
            return reply_status(req, rv);
        reply_entry(req, e);
    });
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
    auto& fs = filesystem_of(req);
    make_entry(req, "link", newparent, newname, [&](int dirfd, const CallerUmask&) {
        return sys::link_path_fd(fs.inode(ino).path_fd.get(), dirfd, newname);
    });
}

void remove_entry(fuse_req_t req, const char* op, fuse_ino_t parent, const char* name,
                  int flags) {
    guarded(req, op, [&] {
        auto& fs = filesystem_of(req);
        CallerCredentials as_caller(req);
        reply_status(req, sys::unlinkat(fs.inode(parent).path_fd.get(), name, flags));
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
        CallerCredentials as_caller(req);
        reply_status(req, sys::renameat2(fs.inode(parent).path_fd.get(), name,
                                         fs.inode(newparent).path_fd.get(), newname, flags));
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

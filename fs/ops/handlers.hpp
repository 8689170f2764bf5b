#pragma once
// What every FUSE handler shares: the trampoline that keeps exceptions out of libfuse, the
// replies that must give back a lookup reference when the kernel did not take the answer,
// and the functions through which each file adds its operations to the table.

#include "diofs/error_boundary.hpp"
#include "diofs/filesystem.hpp"

#include <fuse_lowlevel.h>

#include <memory>

namespace diofs::ops {

// Runs one request. A handler replies exactly once, as its last step, so an exception can
// only come before the reply; it is logged and answered with its errno here, once (ENOMEM for
// bad_alloc, the errno of a refused credentials switch, EIO for the rest).
// "Last" includes destructors: once the reply is sent, the caller can close the file and the
// kernel forget the inode (FORGET, served by another thread, destroys it), so nothing that
// refers to the inode (an InodeIo::Change, a lock of it) may still be alive at the reply.
template <typename Handler>
void guarded(fuse_req_t req, const char* op, Handler&& handler) noexcept {
    try {
        handler();
    } catch (...) {
        fuse_reply_err(req, -current_exception_errno(op));
    }
}

// Replies `rv` (0 or -errno) as an error reply: positive errno, 0 for success.
inline void reply_status(fuse_req_t req, int rv) { fuse_reply_err(req, -rv); }

// fuse_reply_entry, and when the kernel did not receive it (the caller was interrupted), the
// lookup reference it carried is given back, or the inode would never be forgotten.
void reply_entry(fuse_req_t req, const fuse_entry_param& e);

// Hands `object` (an OpenFile, an OpenDir) to the kernel as fi->fh, kept in the mount's
// OpenHandles until its release; when the kernel did not take the reply (the caller was
// interrupted), it is closed again.
template <typename T>
void reply_open(fuse_req_t req, fuse_file_info* fi, std::unique_ptr<T> object) {
    OpenHandles& handles = filesystem_of(req).handles();
    fi->fh = handles.add(std::move(object));
    if (fuse_reply_open(req, fi) != 0)
        handles.close(fi->fh);
}

void add_entry_operations(fuse_lowlevel_ops& ops);      // lookup, forget, mknod, rename, ...
void add_attribute_operations(fuse_lowlevel_ops& ops);  // getattr, setattr, readlink, statfs
void add_file_operations(fuse_lowlevel_ops& ops);       // open, create, read, write, ...
void add_directory_operations(fuse_lowlevel_ops& ops);  // opendir, readdir(plus), ...
void add_xattr_operations(fuse_lowlevel_ops& ops);
void add_lock_operations(fuse_lowlevel_ops& ops);       // getlk, setlk, flock

}  // namespace diofs::ops

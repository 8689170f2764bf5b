// Extended attributes: get, list, set and remove, as the caller (whose capabilities, or lack of
// them, decide about trusted.* and security.* as they would on the backing filesystem).
// No *xattr() call takes an O_PATH descriptor, so these go through /proc/self/fd.

#include "diofs/caller_credentials.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

#include <vector>

namespace diofs::ops {
namespace {

// getxattr and listxattr share their protocol: size 0 asks how big the value is.
template <typename Read>
void reply_xattr_value(fuse_req_t req, size_t size, Read read) {
    if (size == 0) {
        ssize_t n = read(nullptr, 0);
        if (n < 0)
            return reply_status(req, static_cast<int>(n));
        fuse_reply_xattr(req, static_cast<size_t>(n));
        return;
    }
    std::vector<char> value(size);
    ssize_t n = read(value.data(), size);
    if (n < 0)
        return reply_status(req, static_cast<int>(n));
    fuse_reply_buf(req, value.data(), static_cast<size_t>(n));
}

void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    guarded(req, "getxattr", [&] {
        int path_fd = filesystem_of(req).inode(ino).path_fd.get();
        CallerCredentials as_caller(req);
        reply_xattr_value(req, size, [&](char* buf, size_t len) {
            return sys::getxattr_path_fd(path_fd, name, buf, len);
        });
    });
}

void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    guarded(req, "listxattr", [&] {
        int path_fd = filesystem_of(req).inode(ino).path_fd.get();
        CallerCredentials as_caller(req);
        reply_xattr_value(req, size, [&](char* buf, size_t len) {
            return sys::listxattr_path_fd(path_fd, buf, len);
        });
    });
}

void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags) {
    guarded(req, "setxattr", [&] {
        int path_fd = filesystem_of(req).inode(ino).path_fd.get();
        CallerCredentials as_caller(req);
        reply_status(req, sys::setxattr_path_fd(path_fd, name, value, size, flags));
    });
}

void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
    guarded(req, "removexattr", [&] {
        int path_fd = filesystem_of(req).inode(ino).path_fd.get();
        CallerCredentials as_caller(req);
        reply_status(req, sys::removexattr_path_fd(path_fd, name));
    });
}

}  // namespace

void add_xattr_operations(fuse_lowlevel_ops& ops) {
    ops.getxattr = getxattr;
    ops.listxattr = listxattr;
    ops.setxattr = setxattr;
    ops.removexattr = removexattr;
}

}  // namespace diofs::ops

// Extended attributes: get, list, set and remove, as the caller (whose capabilities, or lack of
// them, decide about trusted.* and security.* as they would on the backing filesystem).
// No *xattr() call takes an O_PATH descriptor, so these go through /proc/self/fd.
// user.diofs.stats of the mount's root is the daemon's own (stats.hpp): read-only (EPERM to
// set or remove it) and not listed, so that copies of the tree (cp -a, rsync -X, tar --xattrs)
// do not take it along; the backing path and the daemon's PID in it only for root and the
// mount's owner (StatsView).

#include "diofs/caller_credentials.hpp"
#include "diofs/stats.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

#include <cstring>
#include <string>
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

// user.diofs.stats of the root (stats.hpp): made by the daemon, never stored.
bool is_stats(fuse_ino_t ino, const char* name) {
    return ino == FUSE_ROOT_ID && std::strcmp(name, kStatsXattr) == 0;
}

// Room that a size query promises beyond the stats' length now, so that the value still fits
// when it has grown by the next call (a counter gaining digits).
constexpr size_t kStatsSlack = 1024;

void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    guarded(req, "getxattr", [&] {
        if (is_stats(ino, name)) {
            const std::string stats =
                stats_json(filesystem_of(req), stats_view_for(fuse_req_ctx(req)->uid));
            return reply_xattr_value(req, size, [&](char* buf, size_t len) -> ssize_t {
                if (!buf)
                    return static_cast<ssize_t>(stats.size() + kStatsSlack);
                if (len < stats.size())
                    return -ERANGE;
                std::memcpy(buf, stats.data(), stats.size());
                return static_cast<ssize_t>(stats.size());
            });
        }
        auto& fs = filesystem_of(req);
        PathFd inode_fd;
        if (int rv = fs.path_fd(fs.inode(ino), inode_fd); rv < 0)
            return reply_status(req, rv);
        const int path_fd = inode_fd.get();
        CallerCredentials as_caller(req);
        reply_xattr_value(req, size, [&](char* buf, size_t len) {
            return sys::getxattr_path_fd(path_fd, name, buf, len);
        });
    });
}

void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
    guarded(req, "listxattr", [&] {
        auto& fs = filesystem_of(req);
        PathFd inode_fd;
        if (int rv = fs.path_fd(fs.inode(ino), inode_fd); rv < 0)
            return reply_status(req, rv);
        const int path_fd = inode_fd.get();
        CallerCredentials as_caller(req);
        reply_xattr_value(req, size, [&](char* buf, size_t len) {
            return sys::listxattr_path_fd(path_fd, buf, len);
        });
    });
}

void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags) {
    guarded(req, "setxattr", [&] {
        if (is_stats(ino, name))
            return reply_status(req, -EPERM);
        auto& fs = filesystem_of(req);
        PathFd inode_fd;
        if (int rv = fs.path_fd(fs.inode(ino), inode_fd); rv < 0)
            return reply_status(req, rv);
        const int path_fd = inode_fd.get();
        CallerCredentials as_caller(req);
        reply_status(req, sys::setxattr_path_fd(path_fd, name, value, size, flags));
    });
}

void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
    guarded(req, "removexattr", [&] {
        if (is_stats(ino, name))
            return reply_status(req, -EPERM);
        auto& fs = filesystem_of(req);
        PathFd inode_fd;
        if (int rv = fs.path_fd(fs.inode(ino), inode_fd); rv < 0)
            return reply_status(req, rv);
        const int path_fd = inode_fd.get();
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

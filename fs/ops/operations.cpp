#include "diofs/operations.hpp"

#include "handlers.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

namespace diofs {
namespace ops {

void reply_entry(fuse_req_t req, const fuse_entry_param& e) {
    auto& fs = filesystem_of(req);
    if (fs.reply_with_attributes({&e.ino, 1}, [&] { return fuse_reply_entry(req, &e); }) != 0)
        fs.forget(e.ino, 1);
}

namespace {

// Asking the kernel for a capability, and declining one. libfuse 3.17 made the flags 64 bits
// wide (want_ext, capable_ext, set through fuse_set_feature_flag, which asks only for what the
// kernel offers); 3.14 has the 32-bit want and capable.
bool want_if_offered(fuse_conn_info* conn, uint64_t cap) {
#if FUSE_MINOR_VERSION >= 17
    return fuse_set_feature_flag(conn, cap);
#else
    if (!(conn->capable & cap))
        return false;
    conn->want |= static_cast<unsigned>(cap);
    return true;
#endif
}

void decline(fuse_conn_info* conn, uint64_t cap) {
#if FUSE_MINOR_VERSION >= 17
    fuse_unset_feature_flag(conn, cap);
#else
    conn->want &= ~static_cast<unsigned>(cap);
#endif
}

void init(void* userdata, fuse_conn_info* conn) {
    auto& fs = *static_cast<Filesystem*>(userdata);
    // The backing filesystem clears setuid/setgid bits itself, because every write, truncate,
    // O_TRUNC open and chown runs with the caller's credentials (see caller_credentials.hpp),
    // exactly when it would for that caller natively, so the kernel need not send a mode change
    // of its own. libfuse 3.14 does not pass this flag on to the kernel, though: setattr()
    // recognises the kernel's mode change and applies it. libfuse 3.18 passes it on, and
    // KILLPRIV_V2 too, which tells the daemon on each write, truncate and open when the kernel
    // would clear the bits (fi->kill_suidgid, FUSE_SET_ATTR_KILL_SUIDGID): nothing to do for
    // the daemon either, as its backing call already clears them. With V2 the kernel also
    // marks the mount SB_NOSEC, so a write through the page cache no longer asks for
    // security.capability first (docs/design.md, "libfuse 3.18").
    want_if_offered(conn, FUSE_CAP_HANDLE_KILLPRIV);
#ifdef FUSE_CAP_HANDLE_KILLPRIV_V2
    const bool killpriv_v2 = want_if_offered(conn, FUSE_CAP_HANDLE_KILLPRIV_V2);
    // The writeback window (docs/design.md): only with KILLPRIV_V2, with which the kernel
    // writes through (not into its cache) a write that must clear setuid or setgid bits, and
    // the daemon's write clears them as the writer.
    if (fs.wants_writeback()) {
        if (killpriv_v2 && want_if_offered(conn, FUSE_CAP_WRITEBACK_CACHE)) {
            fs.start_writeback();
            spdlog::info("writeback: files open for writing go through the kernel's page "
                         "cache, {} KiB of it for the mount at most",
                         fs.options().writeback_window >> 10);
        } else {
            fs.window_off(std::string("the kernel does not offer ") +
                          (killpriv_v2 ? "the writeback cache" : "HANDLE_KILLPRIV_V2"));
        }
    }
#endif
    // O_TRUNC reaches open(), where it runs as the caller (and clears setuid bits as such).
    want_if_offered(conn, FUSE_CAP_ATOMIC_O_TRUNC);
    // POSIX ACLs: the kernel enforces them (reading them through getxattr) as the backing
    // filesystem would, and sends modes of new files unmasked, with the caller's umask beside
    // them, so that the backing filesystem can let a default ACL take the umask's place (see
    // CallerUmask).
    want_if_offered(conn, FUSE_CAP_POSIX_ACL);
    want_if_offered(conn, FUSE_CAP_DONT_MASK);
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
    // libfuse 3.16+ (and Linux 6.6+): shared mappings of dbopt (FOPEN_DIRECT_IO) files work
    // too, through the kernel's page cache of the FUSE file. With 3.14 they fail with ENODEV
    // (private mappings, such as running a program, always work).
    want_if_offered(conn, FUSE_CAP_DIRECT_IO_ALLOW_MMAP);
#endif
#if FUSE_MINOR_VERSION >= 18
    if (fs.options().io_uring) {
        if (conn->capable_ext & FUSE_CAP_OVER_IO_URING)
            spdlog::info("io_uring: requests come over io_uring, one ring per CPU");
        else
            spdlog::warn("io_uring: the kernel does not offer it (the fuse module's "
                         "enable_uring): requests go through /dev/fuse");
    }
#endif
    // Request data arrives in memory, not through a pipe: one path for every write.
    decline(conn, FUSE_CAP_SPLICE_READ);
    // The kernel's window of a file being read (kernel_pages.hpp): every drop also marks the
    // inode's attributes stale, and with auto_inval_data every read() after it would first
    // ask for them (a GETATTR per read request: half the requests of a sequential read). What
    // that would guard against is a change made beside the mount, in the backing directory: it
    // is seen at the next open (which drops every page of the file) and, within an open, beyond
    // the window and the daemon's read-ahead.
    // The kernel's read-ahead, sized to the window: the kernel takes the smaller of this and its
    // bdi's read_ahead_kb, which the daemon set before the session started (daemon.cpp).
    if (KernelPages* pages = fs.kernel_pages()) {
        decline(conn, FUSE_CAP_AUTO_INVAL_DATA);
        conn->max_readahead = static_cast<unsigned>(pages->read_ahead());
    }
    conn->time_gran = 1;
    spdlog::debug("session starts: kernel protocol {}.{}, max_write {}", conn->proto_major,
                  conn->proto_minor, conn->max_write);
}

void destroy(void* userdata) {
    auto& fs = *static_cast<Filesystem*>(userdata);
    spdlog::debug("session ends with {} inodes in the table", fs.inodes().size());
}

}  // namespace
}  // namespace ops

fuse_lowlevel_ops make_operations() {
    fuse_lowlevel_ops ops;
    std::memset(&ops, 0, sizeof ops);
    ops.init = ops::init;
    ops.destroy = ops::destroy;
    ops::add_entry_operations(ops);
    ops::add_attribute_operations(ops);
    ops::add_file_operations(ops);
    ops::add_directory_operations(ops);
    ops::add_xattr_operations(ops);
    ops::add_lock_operations(ops);
    return ops;
}

}  // namespace diofs

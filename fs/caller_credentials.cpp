#include "diofs/caller_credentials.hpp"

#include <linux/capability.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace diofs {
namespace {

// Written once by init_process() before any worker thread exists, then only read.
bool g_can_switch = false;
uid_t g_daemon_uid = 0;
gid_t g_daemon_gid = 0;
std::vector<gid_t> g_daemon_groups;
__user_cap_data_struct g_daemon_caps[_LINUX_CAPABILITY_U32S_3] = {};

// The raw system calls act on the calling thread only, unlike glibc's setgroups() (which
// broadcasts to all threads). Each returns 0 or -errno.
int thread_setgroups(const std::vector<gid_t>& groups) {
    return ::syscall(SYS_setgroups, groups.size(), groups.data()) == 0 ? 0 : -errno;
}
// setfsuid() and setfsgid() report no error: they return the previous id whether the change
// took or not. Asked again with an id that is never valid (-1), they change nothing and return
// the present one, which says whether the change took.
int thread_setfsuid(uid_t uid) {
    ::syscall(SYS_setfsuid, uid);
    return static_cast<uid_t>(::syscall(SYS_setfsuid, static_cast<uid_t>(-1))) == uid ? 0 : -EPERM;
}
int thread_setfsgid(gid_t gid) {
    ::syscall(SYS_setfsgid, gid);
    return static_cast<gid_t>(::syscall(SYS_setfsgid, static_cast<gid_t>(-1))) == gid ? 0 : -EPERM;
}

// A new fsuid drops only the file capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID...);
// CAP_SYS_ADMIN (trusted.* and security.* xattrs) and CAP_SYS_RESOURCE (ext4's reserved
// blocks) would stay. A caller who is not root gets none: the thread's effective set is
// emptied for the request and refilled from the permitted set after it.
int thread_set_effective_caps(bool keep) {
    __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    std::memcpy(data, g_daemon_caps, sizeof data);
    if (!keep)
        for (auto& d : data)
            d.effective = 0;
    return ::syscall(SYS_capset, &header, data) == 0 ? 0 : -errno;
}

// What a switch changed, so that exactly that is undone.
enum Changed : unsigned { kGroups = 1, kFsgid = 2, kFsuid = 4, kCaps = 8, kAll = 15 };

// Set when a return to the daemon's credentials failed on this thread: it may be left with a
// caller's identity, groups or (missing) capabilities, so its next request tries again first.
thread_local bool t_not_restored = false;

// Undoes `changed`, capabilities first (setfsuid and setgroups need CAP_SETUID and
// CAP_SETGID back). Every step is tried; 0 or the -errno of the first that failed.
int restore_daemon_credentials(unsigned changed) {
    int first = 0;
    auto step = [&first](int rv) {
        if (first == 0)
            first = rv;
    };
    if (changed & kCaps)
        step(thread_set_effective_caps(true));
    if (changed & kFsuid)
        step(thread_setfsuid(g_daemon_uid));
    if (changed & kFsgid)
        step(thread_setfsgid(g_daemon_gid));
    if (changed & kGroups)
        step(thread_setgroups(g_daemon_groups));
    t_not_restored = first != 0;
    if (first != 0)
        spdlog::critical("a worker thread cannot return to the daemon's credentials ({}): it "
                         "refuses requests until it can",
                         std::strerror(-first));
    return first;
}

}  // namespace

void CallerCredentials::init_process() {
    g_daemon_uid = ::geteuid();
    g_daemon_gid = ::getegid();
    g_can_switch = g_daemon_uid == 0;
    int n = ::getgroups(0, nullptr);
    g_daemon_groups.resize(n > 0 ? static_cast<size_t>(n) : 0);
    if (n > 0)
        ::getgroups(n, g_daemon_groups.data());
    __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    if (::syscall(SYS_capget, &header, g_daemon_caps) != 0)
        g_can_switch = false;
}

Credentials Credentials::of(fuse_req_t req) {
    Credentials c;
    const fuse_ctx* ctx = fuse_req_ctx(req);
    c.uid = ctx->uid;
    c.gid = ctx->gid;
    if (!g_can_switch || (ctx->uid == g_daemon_uid && ctx->gid == g_daemon_gid))
        return c;  // nothing would change
    c.groups.resize(32);
    int n = fuse_req_getgroups(req, static_cast<int>(c.groups.size()), c.groups.data());
    if (n > static_cast<int>(c.groups.size())) {
        c.groups.resize(static_cast<size_t>(n));
        n = fuse_req_getgroups(req, n, c.groups.data());
    }
    c.groups.resize(n > 0 ? static_cast<size_t>(n) : 0);
    c.switches = true;
    return c;
}

bool Credentials::same_ids(fuse_req_t req) const {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    return ctx->uid == uid && ctx->gid == gid;
}

AsCredentials::AsCredentials(const Credentials& c) {
    if (t_not_restored && restore_daemon_credentials(kAll) != 0)
        throw CredentialsError(EPERM, "this thread cannot return to the daemon's credentials");
    if (!c.switches)
        return;
    // A step that was refused changed nothing: only those that took are undone.
    const auto step = [this](unsigned what, int result) {
        if (result == 0)
            changed_ |= what;
        return result;
    };
    int rv = step(kGroups, thread_setgroups(c.groups));
    if (rv == 0)
        rv = step(kFsgid, thread_setfsgid(c.gid));
    if (rv == 0)
        rv = step(kFsuid, thread_setfsuid(c.uid));
    if (rv == 0 && c.uid != 0)
        rv = step(kCaps, thread_set_effective_caps(false));
    if (rv < 0) {
        spdlog::error("cannot act as uid {} gid {} ({}): the request is refused", c.uid, c.gid,
                      std::strerror(-rv));
        restore_daemon_credentials(changed_);
        changed_ = 0;
        throw CredentialsError(-rv, "switching to the caller's credentials");
    }
}

AsCredentials::~AsCredentials() {
    if (changed_)
        restore_daemon_credentials(changed_);
}

CallerUmask::CallerUmask(fuse_req_t req) : umask_(fuse_req_ctx(req)->umask) {
    thread_local const bool own_fs = [] {
        if (::unshare(CLONE_FS) == 0)
            return true;
        spdlog::warn("unshare(CLONE_FS): {}: default ACLs are not applied exactly",
                     std::strerror(errno));
        return false;
    }();
    own_fs_ = own_fs;
    if (own_fs_)
        ::umask(umask_);
}

CallerUmask::~CallerUmask() {
    if (own_fs_)
        ::umask(0);
}

}  // namespace diofs

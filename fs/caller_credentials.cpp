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
// broadcasts to all threads).
void thread_setgroups(const std::vector<gid_t>& groups) {
    if (::syscall(SYS_setgroups, groups.size(), groups.data()) != 0)
        spdlog::warn("setgroups for a request failed: {}", std::strerror(errno));
}
void thread_setfsuid(uid_t uid) { ::syscall(SYS_setfsuid, uid); }
void thread_setfsgid(gid_t gid) { ::syscall(SYS_setfsgid, gid); }

// A new fsuid drops only the file capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID...);
// CAP_SYS_ADMIN (trusted.* and security.* xattrs) and CAP_SYS_RESOURCE (ext4's reserved
// blocks) would stay. A caller who is not root gets none: the thread's effective set is
// emptied for the request and refilled from the permitted set after it.
void thread_set_effective_caps(bool keep) {
    __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    std::memcpy(data, g_daemon_caps, sizeof data);
    if (!keep)
        for (auto& d : data)
            d.effective = 0;
    if (::syscall(SYS_capset, &header, data) != 0)
        spdlog::warn("capset for a request failed: {}", std::strerror(errno));
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
    if (!c.switches)
        return;
    thread_setgroups(c.groups);
    thread_setfsgid(c.gid);
    thread_setfsuid(c.uid);
    if (c.uid != 0)
        thread_set_effective_caps(false);
    switched_ = true;
}

AsCredentials::~AsCredentials() {
    if (!switched_)
        return;
    // Capabilities and fsuid first: setgroups() needs CAP_SETGID back.
    thread_set_effective_caps(true);
    thread_setfsuid(g_daemon_uid);
    thread_setfsgid(g_daemon_gid);
    thread_setgroups(g_daemon_groups);
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

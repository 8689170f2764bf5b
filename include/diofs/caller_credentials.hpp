#pragma once
// Who a request acts as. The daemon runs as root, but what a user does through the mount must
// be exactly what the backing filesystem lets that user do: files they create belong to them
// (and to a setgid directory's group), permissions and sticky bits are checked against them,
// and their writes and truncates clear setuid/setgid bits (which root's CAP_FSETID would keep).
// So each request runs with the caller's filesystem uid, gid and supplementary groups, and
// the backing filesystem decides, as it would for the caller directly.
//
// setfsuid(2), setfsgid(2) and the raw setgroups(2) system call change the calling thread only
// (glibc's setgroups() would change every thread of the process), so worker threads switch
// independently. A daemon that is not root cannot switch; it then acts as itself, which is
// also who its callers are (without allow_other only the mounting user gets in).

#include <fuse_lowlevel.h>

#include <sys/types.h>

#include <system_error>
#include <vector>

namespace diofs {

// A switch of credentials that did not take; code() is the errno of the refused call.
class CredentialsError : public std::system_error {
public:
    CredentialsError(int err, const char* what) : std::system_error(err, std::generic_category(), what) {}
};

// Who a request's caller is, kept: dbopt writes gathered from requests are written out later
// by another thread, which acts as the writer did.
struct Credentials {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;
    // False when there is nothing to switch to (the daemon cannot switch, or the caller has
    // the daemon's own uid and gid).
    bool switches = false;

    // The credentials of `req`'s caller. Supplementary groups come from /proc/<tid>/status of
    // the caller (a caller that exited meanwhile gets its primary group only).
    static Credentials of(fuse_req_t req);
    // Whether `of(req)` could differ from these in uid or gid (groups are not compared: a
    // process rarely changes them, and they cost a read of /proc to learn).
    bool same_ids(fuse_req_t req) const;
};

// Switches the calling thread to some credentials for the lifetime of the object.
//
// It fails closed: when a switch does not take (setgroups, setfsgid, setfsuid or capset
// refused), what was switched is undone and the constructor throws CredentialsError, so the
// request is refused (the FUSE trampoline answers the errno) instead of running with the
// daemon's own groups, identity or capabilities. A thread whose return to the daemon's
// credentials failed (logged as critical) tries again before its next request and refuses it
// while that fails.
class AsCredentials {
public:
    explicit AsCredentials(const Credentials& credentials);
    ~AsCredentials();
    AsCredentials(const AsCredentials&) = delete;
    AsCredentials& operator=(const AsCredentials&) = delete;

private:
    unsigned changed_ = 0;  // what the switch changed (see caller_credentials.cpp)
};

class CallerCredentials : public AsCredentials {
public:
    // Switches the calling thread to the credentials of `req`'s caller.
    explicit CallerCredentials(fuse_req_t req) : AsCredentials(Credentials::of(req)) {}

    // Called once at start-up, before any thread exists: remembers the daemon's own groups and
    // whether it may switch at all.
    static void init_process();
};

// The caller's umask, for requests that create (mknod, mkdir, create). With POSIX ACLs the
// kernel sends the mode unmasked, with the caller's umask beside it, because only the
// filesystem knows whether the parent's default ACL replaces the umask. Running the creating
// call under the caller's umask lets the backing filesystem decide that too. umask belongs to
// the fs_struct, which every thread shares until it calls unshare(CLONE_FS); each worker does
// so the first time it needs one.
class CallerUmask {
public:
    explicit CallerUmask(fuse_req_t req);
    ~CallerUmask();
    CallerUmask(const CallerUmask&) = delete;
    CallerUmask& operator=(const CallerUmask&) = delete;

    // When the thread could not get an fs_struct of its own: the mode with the caller's umask
    // applied by hand (the default-ACL case is then not exact). Otherwise `mode` unchanged.
    mode_t apply(mode_t mode) const { return own_fs_ ? mode : mode & ~umask_; }

private:
    bool own_fs_ = false;
    mode_t umask_ = 0;
};

}  // namespace diofs

// Permissions and ownership as a caller who is not root. Each action runs in a forked child that
// has dropped to a fresh uid/gid (and chosen supplementary groups) and reports its results back
// through a pipe. The same action runs on the mount and on the reference directory, as the same
// user, after the same set-up in backing/ and ref/: the outcomes (and the resulting owners and
// modes in backing/ and ref/) must be the same.

#include "mount_fixture.hpp"
#include "test_support.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace diofs_test {
namespace {

// Identities no one else on the machine uses.
constexpr uid_t kUser = 61000;
constexpr gid_t kUserGroup = 61000;
constexpr uid_t kOtherUser = 61001;
constexpr gid_t kReadGroup = 61002;      // a supplementary group of kUser in some tests
constexpr gid_t kWriteGroup = 61003;     // likewise
constexpr gid_t kSetgidGroup = 61005;    // the group of a setgid directory
constexpr gid_t kForeignGroup = 61009;   // a group kUser is never in


using Outcomes = std::vector<Outcome>;

struct Identity {
    uid_t uid = kUser;
    gid_t gid = kUserGroup;
    std::vector<gid_t> groups;
};

// Runs `body` in a child process with `who`'s credentials; returns what it recorded.
// On any trouble with the child itself, a fatal failure is added and the result is empty.
Outcomes run_as(const Identity& who, const std::function<void(Outcomes&)>& body) {
    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        ADD_FAILURE() << "pipe2: " << errno_name(errno);
        return {};
    }
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) {
        ADD_FAILURE() << "fork: " << errno_name(errno);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        return {};
    }
    if (pid == 0) {
        ::close(pipe_fds[0]);
        if (::setgroups(who.groups.size(), who.groups.data()) != 0 || ::setgid(who.gid) != 0 ||
            ::setuid(who.uid) != 0)
            ::_exit(3);
        ::umask(022);
        Outcomes results;
        body(results);
        const char* p = reinterpret_cast<const char*>(results.data());
        size_t left = results.size() * sizeof(Outcome);
        while (left > 0) {
            ssize_t n = ::write(pipe_fds[1], p, left);
            if (n <= 0)
                ::_exit(4);
            p += n;
            left -= static_cast<size_t>(n);
        }
        ::_exit(0);
    }
    ::close(pipe_fds[1]);
    std::string bytes;
    char buf[4096];
    while (true) {
        ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        bytes.append(buf, static_cast<size_t>(n));
    }
    ::close(pipe_fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ADD_FAILURE() << "the child running as uid " << who.uid << " failed (wait status "
                      << status << "; exit 3 means it could not switch credentials)";
        return {};
    }
    Outcomes results(bytes.size() / sizeof(Outcome));
    std::memcpy(results.data(), bytes.data(), results.size() * sizeof(Outcome));
    return results;
}

// Records one call's outcome.
template <typename F>
void record(Outcomes& out, F&& f) {
    out.push_back(capture(std::forward<F>(f)));
}

class MountPermissions : public MountTest {
protected:
    // Runs `setup(base)` as root for backing/ and for ref/.
    void setup_both(const std::function<void(const std::string&)>& setup) {
        setup(backing());
        setup(ref());
    }

    // Runs `action(base)` as `who` on mnt/ and on ref/; the outcomes must be the same.
    // Returns the mount's.
    Outcomes act_both(const Identity& who,
                      const std::function<void(const std::string&, Outcomes&)>& action) {
        Outcomes m = run_as(who, [&](Outcomes& out) { action(mnt(), out); });
        Outcomes r = run_as(who, [&](Outcomes& out) { action(ref(), out); });
        EXPECT_EQ(m, r) << "as uid " << who.uid << ": left through the mount, right on the "
                        << "reference directory";
        return m;
    }

    // lstat of rel in backing/ and ref/: must both succeed and agree on mode, owner, links.
    struct stat same_result(const std::string& rel) {
        struct stat b{}, r{};
        EXPECT_EQ(::lstat(backing(rel).c_str(), &b), 0) << rel << ": " << errno_name(errno);
        EXPECT_EQ(::lstat(ref(rel).c_str(), &r), 0) << rel << ": " << errno_name(errno);
        EXPECT_EQ(stat_differences(b, r), "") << rel << " (backing vs reference)";
        return b;
    }
};

// Set-up helpers, as root, that must not fail.
void must(int rv, const std::string& what) {
    if (rv != 0)
        throw std::runtime_error(what + ": " + errno_name(errno));
}
void mkdir_owned(const std::string& path, mode_t mode, uid_t uid, gid_t gid) {
    must(::mkdir(path.c_str(), 0700), "mkdir " + path);
    must(::chown(path.c_str(), uid, gid), "chown " + path);
    must(::chmod(path.c_str(), mode), "chmod " + path);
}
void file_owned(const std::string& path, const std::string& data, mode_t mode, uid_t uid, gid_t gid) {
    must(write_whole(path, data, 0600), "create " + path);
    must(::chown(path.c_str(), uid, gid), "chown " + path);
    must(::chmod(path.c_str(), mode), "chmod " + path);  // after chown, which clears set-id bits
}

TEST_F(MountPermissions, EntriesMadeByAUserBelongToThatUser) {
    setup_both([](const std::string& b) { mkdir_owned(P(b, "shared"), 0777, 0, 0); });
    const Identity user;
    Outcomes m = act_both(user, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return opened(::open(P(b, "shared/file").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640)); });
        record(out, [&] { return ::mkdir(P(b, "shared/dir").c_str(), 0750); });
        record(out, [&] { return ::symlink("file", P(b, "shared/link").c_str()); });
        record(out, [&] { return ::mkfifo(P(b, "shared/fifo").c_str(), 0600); });
        record(out, [&] { return ::link(P(b, "shared/file").c_str(), P(b, "shared/hard").c_str()); });
        record(out, [&] { return ::mknod(P(b, "shared/node").c_str(), S_IFREG | 0604, 0); });
        record(out, [&] { return ::mknod(P(b, "shared/sock").c_str(), S_IFSOCK | 0600, 0); });
        record(out, [&] { return ::rename(P(b, "shared/node").c_str(), P(b, "shared/renamed").c_str()); });
        // A user may not make device nodes.
        record(out, [&] { return ::mknod(P(b, "shared/dev").c_str(), S_IFCHR | 0600, makedev(1, 3)); });
    });
    ASSERT_EQ(m.size(), 9u);
    for (size_t i = 0; i < 8; ++i)
        EXPECT_EQ(m[i], success()) << "action #" << i;
    EXPECT_EQ(m[8], failure(EPERM)) << "mknod of a device by a user";
    for (const char* rel : {"shared/file", "shared/dir", "shared/link", "shared/fifo",
                            "shared/hard", "shared/renamed", "shared/sock"}) {
        SCOPED_TRACE(rel);
        struct stat st = same_result(rel);
        EXPECT_EQ(st.st_uid, kUser) << "not owned by the user who made it";
        EXPECT_EQ(st.st_gid, kUserGroup) << "not in the group of the user who made it";
    }
    struct stat st = same_result("shared/hard");
    EXPECT_EQ(st.st_nlink, 2u);
}

TEST_F(MountPermissions, RootOnlyFileCannotBeRead) {
    setup_both([](const std::string& b) {
        file_owned(P(b, "secret"), "top secret", 0600, 0, 0);
        file_owned(P(b, "readable"), "public", 0644, 0, 0);
    });
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return opened(::open(P(b, "secret").c_str(), O_RDONLY)); });
        record(out, [&] { return opened(::open(P(b, "secret").c_str(), O_WRONLY)); });
        record(out, [&] { return ::truncate(P(b, "secret").c_str(), 0); });
        struct stat st;
        record(out, [&] { return ::stat(P(b, "secret").c_str(), &st); });
        record(out, [&] { return opened(::open(P(b, "readable").c_str(), O_RDONLY)); });
        record(out, [&] { return opened(::open(P(b, "readable").c_str(), O_WRONLY)); });
        record(out, [&] { return ::access(P(b, "secret").c_str(), R_OK); });
        record(out, [&] { return ::unlink(P(b, "secret").c_str()); });  // root's directory
        record(out, [&] { return ::chmod(P(b, "secret").c_str(), 0666); });
    });
    ASSERT_EQ(m.size(), 9u);
    EXPECT_EQ(m[0], failure(EACCES)) << "read of root's 0600 file";
    EXPECT_EQ(m[1], failure(EACCES));
    EXPECT_EQ(m[2], failure(EACCES));
    EXPECT_EQ(m[3], success());
    EXPECT_EQ(m[4], success());
    EXPECT_EQ(m[5], failure(EACCES));
    EXPECT_EQ(m[6], failure(EACCES));
    EXPECT_EQ(m[7], failure(EACCES));
    EXPECT_EQ(m[8], failure(EPERM));
    EXPECT_EQ(read_whole(backing("secret")), "top secret");
    same_result("secret");
}

TEST_F(MountPermissions, RootOnlyDirectoryCannotBeListedOrEntered) {
    setup_both([](const std::string& b) {
        mkdir_owned(P(b, "private"), 0700, 0, 0);
        file_owned(P(b, "private/inside"), "x", 0644, 0, 0);
        mkdir_owned(P(b, "searchonly"), 0711, 0, 0);
        file_owned(P(b, "searchonly/inside"), "y", 0644, 0, 0);
    });
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        for (const char* dir : {"private", "searchonly"}) {
            record(out, [&] { return opened(::open(P(b, dir).c_str(), O_RDONLY | O_DIRECTORY)); });
            record(out, [&] {
                DIR* d = ::opendir(P(b, dir).c_str());
                if (!d)
                    return -1;
                ::closedir(d);
                return 0;
            });
            record(out, [&] { return ::chdir(P(b, dir).c_str()); });
            struct stat st;
            record(out, [&] { return ::stat(P(b, std::string(dir) + "/inside").c_str(), &st); });
            record(out, [&] { return opened(::open(P(b, std::string(dir) + "/inside").c_str(), O_RDONLY)); });
            record(out, [&] { return opened(::open(P(b, std::string(dir) + "/new").c_str(), O_WRONLY | O_CREAT, 0644)); });
            record(out, [&] { return ::mkdir(P(b, std::string(dir) + "/sub").c_str(), 0755); });
        }
    });
    ASSERT_EQ(m.size(), 14u);
    for (size_t i = 0; i < 7; ++i)
        EXPECT_EQ(m[i], failure(EACCES)) << "0700 directory of root, action #" << i;
    // 0711: cannot be listed, but a known name can be reached.
    EXPECT_EQ(m[7], failure(EACCES));
    EXPECT_EQ(m[8], failure(EACCES));
    EXPECT_EQ(m[9], success());
    EXPECT_EQ(m[10], success());
    EXPECT_EQ(m[11], success());
    EXPECT_EQ(m[12], failure(EACCES));
    EXPECT_EQ(m[13], failure(EACCES));
}

TEST_F(MountPermissions, SetgidDirectoryGivesItsGroup) {
    setup_both([](const std::string& b) { mkdir_owned(P(b, "sgid"), 02777, 0, kSetgidGroup); });
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return opened(::open(P(b, "sgid/file").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0664)); });
        record(out, [&] { return ::mkdir(P(b, "sgid/sub").c_str(), 0775); });
        record(out, [&] { return ::mkfifo(P(b, "sgid/fifo").c_str(), 0600); });
        record(out, [&] { return ::symlink("file", P(b, "sgid/link").c_str()); });
        record(out, [&] { return opened(::open(P(b, "sgid/sub/deeper").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600)); });
    });
    ASSERT_EQ(m, Outcomes(5, success()));
    for (const char* rel : {"sgid/file", "sgid/sub", "sgid/fifo", "sgid/link", "sgid/sub/deeper"}) {
        SCOPED_TRACE(rel);
        struct stat st = same_result(rel);
        EXPECT_EQ(st.st_uid, kUser);
        EXPECT_EQ(st.st_gid, kSetgidGroup) << "the setgid directory's group was not inherited";
    }
    struct stat sub = same_result("sgid/sub");
    EXPECT_TRUE(sub.st_mode & S_ISGID) << "a subdirectory of a setgid directory must be setgid";
}

TEST_F(MountPermissions, SupplementaryGroupGrantsAccess) {
    setup_both([](const std::string& b) {
        file_owned(P(b, "grp"), "group data", 0640, 0, kReadGroup);
        mkdir_owned(P(b, "grpdir"), 0770, 0, kWriteGroup);
    });
    auto action = [](const std::string& b, Outcomes& out) {
        record(out, [&] {
            std::string data;
            if (!read_whole(P(b, "grp"), &data))
                return -1;
            return data == "group data" ? 0 : -2;
        });
        record(out, [&] { return opened(::open(P(b, "grp").c_str(), O_WRONLY)); });
        record(out, [&] { return opened(::open(P(b, "grpdir/new").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644)); });
        record(out, [&] {
            DIR* d = ::opendir(P(b, "grpdir").c_str());
            if (!d)
                return -1;
            ::closedir(d);
            return 0;
        });
    };
    Identity member;
    member.groups = {kReadGroup, kWriteGroup};
    Outcomes m = act_both(member, action);
    EXPECT_EQ(m, (Outcomes{success(), failure(EACCES), success(), success()}))
        << "a member of the file's group (supplementary) must be able to read it";
    struct stat st = same_result("grpdir/new");
    EXPECT_EQ(st.st_uid, kUser);
    EXPECT_EQ(st.st_gid, kUserGroup);
    // Without the supplementary groups: no access.
    Identity outsider;
    outsider.uid = kOtherUser;
    outsider.gid = kOtherUser;
    Outcomes o = act_both(outsider, action);
    EXPECT_EQ(o, (Outcomes{failure(EACCES), failure(EACCES), failure(EACCES), failure(EACCES)}));
    // Primary group only.
    Identity primary;
    primary.uid = kOtherUser;
    primary.gid = kReadGroup;
    Outcomes p = act_both(primary, action);
    ASSERT_EQ(p.size(), 4u);
    EXPECT_EQ(p[0], success());
}

TEST_F(MountPermissions, StickyDirectoryProtectsOtherUsersFiles) {
    setup_both([](const std::string& b) {
        mkdir_owned(P(b, "tmp"), 01777, 0, 0);
        file_owned(P(b, "tmp/other"), "theirs", 0666, kOtherUser, kOtherUser);
        file_owned(P(b, "tmp/mine"), "mine", 0644, kUser, kUserGroup);
        mkdir_owned(P(b, "tmp/otherdir"), 0777, kOtherUser, kOtherUser);
    });
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return ::unlink(P(b, "tmp/other").c_str()); });
        record(out, [&] { return ::rename(P(b, "tmp/other").c_str(), P(b, "tmp/stolen").c_str()); });
        record(out, [&] { return ::rename(P(b, "tmp/mine").c_str(), P(b, "tmp/other").c_str()); });
        record(out, [&] { return ::rmdir(P(b, "tmp/otherdir").c_str()); });
        record(out, [&] { return opened(::open(P(b, "tmp/other").c_str(), O_WRONLY)); });  // 0666: allowed
        record(out, [&] { return ::unlink(P(b, "tmp/mine").c_str()); });
    });
    EXPECT_EQ(m, (Outcomes{failure(EPERM), failure(EPERM), failure(EPERM), failure(EPERM),
                           success(), success()}));
    struct stat st = same_result("tmp/other");
    EXPECT_EQ(st.st_uid, kOtherUser);
    EXPECT_EQ(read_whole(backing("tmp/other")), "theirs");
}

TEST_F(MountPermissions, ChownAndChmodByAUser) {
    setup_both([](const std::string& b) {
        file_owned(P(b, "owned"), "mine", 0644, kUser, kUserGroup);
        file_owned(P(b, "rootfile"), "root's", 0666, 0, 0);
        file_owned(P(b, "rootgroup"), "mine, root's group", 0644, kUser, 0);
        file_owned(P(b, "suidmine"), "mine, set-id", 06755, kUser, kUserGroup);
    });
    Identity user;
    user.groups = {kReadGroup};
    Outcomes m = act_both(user, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return ::chown(P(b, "owned").c_str(), kOtherUser, static_cast<gid_t>(-1)); });
        record(out, [&] { return ::chown(P(b, "owned").c_str(), 0, static_cast<gid_t>(-1)); });
        record(out, [&] { return ::chown(P(b, "owned").c_str(), static_cast<uid_t>(-1), kForeignGroup); });
        record(out, [&] { return ::chown(P(b, "owned").c_str(), kUser, static_cast<gid_t>(-1)); });
        record(out, [&] { return ::chown(P(b, "owned").c_str(), static_cast<uid_t>(-1), kReadGroup); });
        record(out, [&] { return ::chown(P(b, "rootfile").c_str(), kUser, kUserGroup); });
        record(out, [&] { return ::chmod(P(b, "rootfile").c_str(), 0777); });
        record(out, [&] { return ::chmod(P(b, "owned").c_str(), 0600); });
        // Setting setgid on a file whose group the user is not in: the bit is dropped.
        record(out, [&] { return ::chmod(P(b, "rootgroup").c_str(), 02755); });
        // Times: explicit ones only for the owner, "now" for anyone who may write.
        const timespec explicit_times[2] = {{1000000000, 0}, {1000000000, 0}};
        record(out, [&] { return ::utimensat(AT_FDCWD, P(b, "rootfile").c_str(), explicit_times, 0); });
        record(out, [&] { return ::utimensat(AT_FDCWD, P(b, "rootfile").c_str(), nullptr, 0); });
        const timespec now_omit[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
        record(out, [&] { return ::utimensat(AT_FDCWD, P(b, "rootfile").c_str(), now_omit, 0); });
        record(out, [&] { return ::utimensat(AT_FDCWD, P(b, "owned").c_str(), explicit_times, 0); });
        // chgrp by the owner clears setuid and setgid.
        record(out, [&] { return ::chown(P(b, "suidmine").c_str(), static_cast<uid_t>(-1), kReadGroup); });
    });
    EXPECT_EQ(m, (Outcomes{failure(EPERM), failure(EPERM), failure(EPERM), success(), success(),
                           failure(EPERM), failure(EPERM), success(), success(), failure(EPERM),
                           success(), failure(EPERM), success(), success()}));
    struct stat st = same_result("owned");
    EXPECT_EQ(st.st_uid, kUser);
    EXPECT_EQ(st.st_gid, kReadGroup);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    st = same_result("rootfile");
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_mode & 07777, 0666u);
    st = same_result("rootgroup");
    EXPECT_EQ(st.st_mode & 07777, 0755u) << "setgid kept on a file of a group the owner is not in";
    st = same_result("suidmine");
    EXPECT_EQ(st.st_gid, kReadGroup);
    EXPECT_EQ(st.st_mode & 07777, 0755u) << "chgrp by the owner kept the set-id bits";
}

TEST_F(MountPermissions, WriteAndTruncateClearSetuidAndSetgid) {
    setup_both([](const std::string& b) {
        for (const char* name : {"write", "pwrite", "truncate", "ftruncate", "otrunc", "fallocate"})
            file_owned(P(b, name), "#!/bin/sh\nexit 0\n", 06775, 0, kWriteGroup);
        // setgid without group execute is not a set-id bit (mandatory locking): it stays.
        file_owned(P(b, "sgid-noexec"), "data", 02764, 0, kWriteGroup);
        // setuid, group-writable, without execute bits at all: setuid goes.
        file_owned(P(b, "suid-noexec"), "data", 04664, 0, kWriteGroup);
    });
    Identity writer;
    writer.groups = {kWriteGroup};
    Outcomes m = act_both(writer, [](const std::string& b, Outcomes& out) {
        auto with_fd = [&](const char* name, int flags, auto&& f) {
            record(out, [&] {
                int fd = ::open(P(b, name).c_str(), flags);
                if (fd < 0)
                    return -1L;
                long rv = static_cast<long>(f(fd));
                int err = errno;
                ::close(fd);
                errno = err;
                return rv;
            });
        };
        with_fd("write", O_WRONLY | O_APPEND, [](int fd) { return ::write(fd, "#\n", 2); });
        with_fd("pwrite", O_RDWR, [](int fd) { return ::pwrite(fd, "#", 1, 3); });
        record(out, [&] { return ::truncate(P(b, "truncate").c_str(), 5); });
        with_fd("ftruncate", O_WRONLY, [](int fd) { return ::ftruncate(fd, 100); });
        record(out, [&] { return opened(::open(P(b, "otrunc").c_str(), O_WRONLY | O_TRUNC)); });
        with_fd("fallocate", O_WRONLY, [](int fd) { return ::fallocate(fd, 0, 0, 8192); });
        with_fd("sgid-noexec", O_WRONLY, [](int fd) { return ::pwrite(fd, "x", 1, 0); });
        with_fd("suid-noexec", O_WRONLY, [](int fd) { return ::pwrite(fd, "x", 1, 0); });
    });
    EXPECT_EQ(m, (Outcomes{success(2), success(1), success(), success(), success(), success(),
                           success(1), success(1)}));
    for (const char* name : {"write", "pwrite", "truncate", "ftruncate", "otrunc"}) {
        SCOPED_TRACE(name);
        struct stat st = same_result(name);
        EXPECT_EQ(st.st_mode & 07777, 0775u) << "setuid/setgid not cleared in the backing file";
        EXPECT_EQ(st.st_uid, 0u);
        EXPECT_EQ(st.st_gid, kWriteGroup);
        // The mount shows the same mode as the backing file.
        struct stat through{};
        ASSERT_EQ(::lstat(mnt(name).c_str(), &through), 0);
        EXPECT_EQ(through.st_mode, st.st_mode) << "the mount shows a stale mode";
    }
    same_result("fallocate");  // whatever the backing filesystem does, the mount does the same
    struct stat st = same_result("sgid-noexec");
    EXPECT_EQ(st.st_mode & 07777, 02764u);
    st = same_result("suid-noexec");
    EXPECT_EQ(st.st_mode & 07777, 0664u);
    for (const char* name : {"write", "pwrite", "truncate", "ftruncate", "otrunc"}) {
        SCOPED_TRACE(name);
        EXPECT_EQ(read_whole(backing(name)), read_whole(ref(name)));
    }
}

TEST_F(MountPermissions, PrivilegedXattrNamespaces) {
    setup_both([](const std::string& b) {
        file_owned(P(b, "f"), "x", 0666, 0, 0);
        must(::setxattr(P(b, "f").c_str(), "trusted.secret", "hidden", 6, 0), "setxattr trusted");
        must(::setxattr(P(b, "f").c_str(), "user.visible", "seen", 4, 0), "setxattr user");
        file_owned(P(b, "mine"), "y", 0644, kUser, kUserGroup);
    });
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        char buf[64];
        record(out, [&] { return ::getxattr(P(b, "f").c_str(), "trusted.secret", buf, sizeof buf); });
        record(out, [&] { return ::getxattr(P(b, "f").c_str(), "trusted.secret", nullptr, 0); });
        record(out, [&] { return ::getxattr(P(b, "f").c_str(), "user.visible", buf, sizeof buf); });
        record(out, [&] { return ::setxattr(P(b, "f").c_str(), "trusted.mine", "v", 1, 0); });
        record(out, [&] { return ::setxattr(P(b, "f").c_str(), "security.evil", "v", 1, 0); });
        record(out, [&] { return ::setxattr(P(b, "mine").c_str(), "security.evil", "v", 1, 0); });
        record(out, [&] { return ::removexattr(P(b, "f").c_str(), "trusted.secret"); });
        // listxattr shows the user.* name only: the length of "user.visible\0".
        record(out, [&] { return ::listxattr(P(b, "f").c_str(), buf, sizeof buf); });
        record(out, [&] { return ::setxattr(P(b, "mine").c_str(), "user.ok", "v", 1, 0); });
    });
    EXPECT_EQ(m, (Outcomes{failure(ENODATA), failure(ENODATA), success(4), failure(EPERM),
                           failure(EPERM), failure(EPERM), failure(EPERM), success(13),
                           success()}));
    // Still there, and root sees it through the mount.
    char buf[16] = {};
    EXPECT_EQ(::getxattr(backing("f").c_str(), "trusted.secret", buf, sizeof buf), 6);
    EXPECT_EQ(::getxattr(mnt("f").c_str(), "trusted.secret", buf, sizeof buf), 6)
        << "root cannot read trusted.* through the mount: " << errno_name(errno);
    EXPECT_EQ(::getxattr(backing("f").c_str(), "trusted.mine", buf, sizeof buf), -1);
    EXPECT_EQ(::getxattr(backing("mine").c_str(), "user.ok", buf, sizeof buf), 1);
}

TEST_F(MountPermissions, ProtectedHardlinks) {
    setup_both([](const std::string& b) {
        mkdir_owned(P(b, "shared"), 0777, 0, 0);
        file_owned(P(b, "rootonly"), "root", 0600, 0, 0);
        file_owned(P(b, "mine"), "mine", 0600, kUser, kUserGroup);
    });
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return ::link(P(b, "rootonly").c_str(), P(b, "shared/stolen").c_str()); });
        record(out, [&] { return ::link(P(b, "mine").c_str(), P(b, "shared/mine2").c_str()); });
    });
    std::string protected_hardlinks = read_whole("/proc/sys/fs/protected_hardlinks");
    ASSERT_EQ(m.size(), 2u);
    if (protected_hardlinks.substr(0, 1) == "1") {
        EXPECT_EQ(m[0], failure(EPERM));
    }
    EXPECT_EQ(m[1], success());
    struct stat st = same_result("shared/mine2");
    EXPECT_EQ(st.st_nlink, 2u);
    EXPECT_EQ(st.st_uid, kUser);
}

// A directory the caller may read but not search (r-- for them) can be listed: opendir needs
// read permission only. (Its entries cannot be stat'ed, of course.)
TEST_F(MountPermissions, ReadableButNotSearchableDirectoryCanBeListed) {
    setup_both([](const std::string& b) {
        mkdir_owned(P(b, "listonly"), 0744, 0, 0);
        file_owned(P(b, "listonly/a"), "a", 0644, 0, 0);
        file_owned(P(b, "listonly/b"), "b", 0644, 0, 0);
        mkdir_owned(P(b, "ownnox"), 0700, kUser, kUserGroup);
        file_owned(P(b, "ownnox/c"), "c", 0644, kUser, kUserGroup);
        must(::chmod(P(b, "ownnox").c_str(), 0600), "chmod ownnox");
    });
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        for (const char* dir : {"listonly", "ownnox"}) {
            const std::string inside = std::string(dir) + (dir[0] == 'l' ? "/a" : "/c");
            record(out, [&] { return opened(::open(P(b, dir).c_str(), O_RDONLY | O_DIRECTORY)); });
            // The number of names listed (without . and ..), or -1.
            record(out, [&] {
                std::map<std::string, unsigned char> names;
                return list_dir(P(b, dir), &names) ? static_cast<long>(names.size()) : -1L;
            });
            struct stat st;
            record(out, [&] { return ::stat(P(b, inside).c_str(), &st); });
        }
    });
    EXPECT_EQ(m, (Outcomes{success(), success(2), failure(EACCES), success(), success(1),
                           failure(EACCES)}))
        << "opendir of a directory the caller may read but not search";
}

// More supplementary groups than the daemon's first guess (32): the last one grants access.
TEST_F(MountPermissions, ManySupplementaryGroups) {
    setup_both([](const std::string& b) {
        file_owned(P(b, "grp"), "group data", 0640, 0, kReadGroup);
        mkdir_owned(P(b, "grpdir"), 0070, 0, kReadGroup);
    });
    Identity member;
    for (gid_t g = 61100; g < 61160; ++g)
        member.groups.push_back(g);
    member.groups.push_back(kReadGroup);
    Outcomes m = act_both(member, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return opened(::open(P(b, "grp").c_str(), O_RDONLY)); });
        record(out, [&] { return opened(::open(P(b, "grpdir/new").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600)); });
    });
    EXPECT_EQ(m, (Outcomes{success(), success()}))
        << "the 61st supplementary group of the caller was not taken into account";
    struct stat st = same_result("grpdir/new");
    EXPECT_EQ(st.st_uid, kUser);
}

// A write by anyone (root included) removes file capabilities, as it removes set-id bits.
TEST_F(MountPermissions, WriteRemovesFileCapabilities) {
    // security.capability, VFS_CAP_REVISION_2: cap_net_raw (bit 13) permitted and effective.
    const uint32_t cap[5] = {0x02000000u | 1u /* revision 2, effective */, 1u << 13, 0, 0, 0};
    bool supported = true;
    setup_both([&](const std::string& b) {
        file_owned(P(b, "capf"), "binary", 0755, 0, 0);
        if (::setxattr(P(b, "capf").c_str(), "security.capability", cap, sizeof cap, 0) != 0)
            supported = false;
    });
    if (!supported)
        GTEST_SKIP() << "the backing filesystem takes no security.capability here";
    for (const std::string& path : {mnt("capf"), ref("capf")}) {
        Fd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        ASSERT_TRUE(fd) << path << ": " << errno_name(errno);
        ASSERT_EQ(::write(fd.get(), "+", 1), 1);
    }
    char buf[64];
    Outcome b = capture([&] { return ::getxattr(backing("capf").c_str(), "security.capability", buf, sizeof buf); });
    Outcome r = capture([&] { return ::getxattr(ref("capf").c_str(), "security.capability", buf, sizeof buf); });
    EXPECT_EQ(b, r) << "security.capability after a write (backing vs reference)";
    same_result("capf");
}

// POSIX ACLs of the backing filesystem (system.posix_acl_access / _default, Linux xattr format).
namespace acl {
constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08, kMask = 0x10,
                   kOther = 0x20;
constexpr uint32_t kUndefined = 0xffffffffu;
struct Entry {
    uint16_t tag, perm;
    uint32_t id;
};
std::string encode(const std::vector<Entry>& entries) {
    std::string blob(4, '\0');
    const uint32_t version = 2;
    std::memcpy(blob.data(), &version, 4);
    for (const auto& e : entries)
        blob.append(reinterpret_cast<const char*>(&e), sizeof e);
    return blob;
}
}  // namespace acl

// Access that only an ACL entry grants: the backing filesystem grants it to the caller.
TEST_F(MountPermissions, AccessGrantedByAnAclEntry) {
    const std::string access = acl::encode({{acl::kUserObj, 6, acl::kUndefined},
                                            {acl::kUser, 4, kUser},
                                            {acl::kGroupObj, 0, acl::kUndefined},
                                            {acl::kGroup, 6, kWriteGroup},
                                            {acl::kMask, 6, acl::kUndefined},
                                            {acl::kOther, 0, acl::kUndefined}});
    bool supported = true;
    setup_both([&](const std::string& b) {
        file_owned(P(b, "aclf"), "acl data", 0600, 0, 0);
        if (::setxattr(P(b, "aclf").c_str(), "system.posix_acl_access", access.data(),
                       access.size(), 0) != 0)
            supported = false;
    });
    if (!supported)
        GTEST_SKIP() << "the backing filesystem has no POSIX ACLs here";
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return opened(::open(P(b, "aclf").c_str(), O_RDONLY)); });
        record(out, [&] { return opened(::open(P(b, "aclf").c_str(), O_WRONLY)); });
    });
    EXPECT_EQ(m, (Outcomes{success(), failure(EACCES)}))
        << "read access granted by an ACL entry for the caller's uid";
    Identity writer;
    writer.uid = kOtherUser;
    writer.gid = kOtherUser;
    writer.groups = {kWriteGroup};
    Outcomes w = act_both(writer, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return opened(::open(P(b, "aclf").c_str(), O_WRONLY)); });
    });
    EXPECT_EQ(w, (Outcomes{success()})) << "write access granted by an ACL entry for a group";
    same_result("aclf");
}

// A directory's default ACL, not the caller's umask, decides the mode of new entries.
TEST_F(MountPermissions, DefaultAclDecidesTheModeOfNewEntries) {
    const std::string def = acl::encode({{acl::kUserObj, 7, acl::kUndefined},
                                         {acl::kGroupObj, 7, acl::kUndefined},
                                         {acl::kOther, 7, acl::kUndefined}});
    bool supported = true;
    setup_both([&](const std::string& b) {
        mkdir_owned(P(b, "dacl"), 0777, 0, 0);
        if (::setxattr(P(b, "dacl").c_str(), "system.posix_acl_default", def.data(), def.size(),
                       0) != 0)
            supported = false;
    });
    if (!supported)
        GTEST_SKIP() << "the backing filesystem has no POSIX ACLs here";
    // The caller's umask is 022 (run_as sets it).
    Outcomes m = act_both(Identity{}, [](const std::string& b, Outcomes& out) {
        record(out, [&] { return opened(::open(P(b, "dacl/file").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0666)); });
        record(out, [&] { return ::mkdir(P(b, "dacl/dir").c_str(), 0777); });
    });
    EXPECT_EQ(m, (Outcomes{success(), success()}));
    struct stat st = same_result("dacl/file");
    EXPECT_EQ(st.st_mode & 07777, 0666u) << "the umask was applied despite the default ACL";
    st = same_result("dacl/dir");
    EXPECT_EQ(st.st_mode & 07777, 0777u) << "the umask was applied despite the default ACL";
}

}  // namespace
}  // namespace diofs_test

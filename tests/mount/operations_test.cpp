// Every FUSE operation diofs implements, done through the mount (mnt/) and on a plain reference
// directory (ref/) on the same backing filesystem: results, errno values and the stat fields
// that pass through must be the same.

#include "mount_fixture.hpp"
#include "test_support.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace diofs_test {
namespace {


std::string random_bytes(size_t n, unsigned seed) {
    return random_bytes_from<std::mt19937>(n, seed);
}

timespec now_realtime() {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return ts;
}

class MountOps : public MountTest {
protected:
    // Runs f(base) with base = mnt/ and then base = ref/; the outcomes must be the same.
    // Returns the mount's outcome.
    template <typename F>
    Outcome both(const std::string& what, F&& f) {
        Outcome m = capture([&] { return f(mnt()); });
        Outcome r = capture([&] { return f(ref()); });
        EXPECT_EQ(m, r) << what << " (left: through the mount, right: the reference directory)";
        return m;
    }

    // The same, and the outcome must be `expected`.
    template <typename F>
    void both_expect(const std::string& what, Outcome expected, F&& f) {
        Outcome m = both(what, std::forward<F>(f));
        EXPECT_EQ(m, expected) << what;
    }

    // A descriptor on each side.
    struct Pair {
        Fd m, r;
    };
    Pair open_both(const std::string& rel, int flags, mode_t mode = 0644) {
        Pair p;
        Outcome om = capture([&] { return ::open(mnt(rel).c_str(), flags | O_CLOEXEC, mode); });
        Outcome orf = capture([&] { return ::open(ref(rel).c_str(), flags | O_CLOEXEC, mode); });
        EXPECT_EQ(om.ok(), orf.ok()) << "open " << rel << ": " << om << " vs " << orf;
        EXPECT_EQ(om.err, orf.err) << "open " << rel;
        if (om.ok())
            p.m = Fd(static_cast<int>(om.rv));
        if (orf.ok())
            p.r = Fd(static_cast<int>(orf.rv));
        return p;
    }

    // f(fd) on each side's descriptor; the outcomes must be the same.
    template <typename F>
    Outcome both_fd(const std::string& what, Pair& p, F&& f) {
        Outcome m = capture([&] { return f(p.m.get()); });
        Outcome r = capture([&] { return f(p.r.get()); });
        EXPECT_EQ(m, r) << what << " (left: through the mount, right: the reference directory)";
        return m;
    }

    // lstat (stat with `follow`) of rel on both sides: same outcome, same fields.
    void same_stat(const std::string& rel, bool follow = false, bool times = false,
                   struct stat* mount_st = nullptr) {
        struct stat m{}, r{};
        auto do_stat = [&](const std::string& path, struct stat* st) {
            return follow ? ::stat(path.c_str(), st) : ::lstat(path.c_str(), st);
        };
        Outcome om = capture([&] { return do_stat(mnt(rel), &m); });
        Outcome orf = capture([&] { return do_stat(ref(rel), &r); });
        EXPECT_EQ(om, orf) << (follow ? "stat " : "lstat ") << rel;
        if (om.ok() && orf.ok()) {
            EXPECT_EQ(stat_differences(m, r, times), "")
                << (follow ? "stat " : "lstat ") << rel << " (mount vs reference)";
        }
        if (mount_st)
            *mount_st = m;
    }

    void same_content(const std::string& rel) {
        std::string m = read_whole(mnt(rel));
        std::string r = read_whole(ref(rel));
        EXPECT_EQ(m.size(), r.size()) << "content of " << rel;
        EXPECT_TRUE(m == r) << "content of " << rel << " differs";
    }

    // Creates rel with `data` on both sides (through the mount and in ref/).
    void make_file(const std::string& rel, const std::string& data, mode_t mode = 0644) {
        ASSERT_EQ(write_whole(mnt(rel), data, mode), 0) << "create " << mnt(rel) << ": "
                                                        << errno_name(errno);
        ASSERT_EQ(write_whole(ref(rel), data, mode), 0) << "create " << ref(rel) << ": "
                                                        << errno_name(errno);
    }
    void make_dir(const std::string& rel, mode_t mode = 0755) {
        both_expect("mkdir " + rel, success(), [&](const std::string& b) {
            return ::mkdir(P(b, rel).c_str(), mode);
        });
    }
};

// ---- lookup, getattr ------------------------------------------------------------------------

TEST_F(MountOps, LookupAndStatOfEveryType) {
    make_file("file", "0123456789");
    make_dir("dir", 0750);
    both_expect("symlink", success(), [](const std::string& b) {
        return ::symlink("file", P(b, "link").c_str());
    });
    both_expect("mkfifo", success(), [](const std::string& b) {
        return ::mkfifo(P(b, "fifo").c_str(), 0640);
    });
    for (const char* rel : {"file", "dir", "link", "fifo", "."}) {
        SCOPED_TRACE(rel);
        same_stat(rel);
        same_stat(rel, /*follow=*/true);
    }
    both_expect("stat of a missing name", failure(ENOENT), [](const std::string& b) {
        struct stat st;
        return ::lstat(P(b, "missing").c_str(), &st);
    });
    // The inode numbers the mount shows are the backing files'.
    struct stat m, bk;
    ASSERT_EQ(::lstat(mnt("file").c_str(), &m), 0);
    ASSERT_EQ(::lstat(backing("file").c_str(), &bk), 0);
    EXPECT_EQ(m.st_ino, bk.st_ino);
    EXPECT_EQ(stat_differences(m, bk), "");
}

TEST_F(MountOps, GetattrThroughOpenDescriptor) {
    auto p = open_both("f", O_RDWR | O_CREAT | O_EXCL, 0640);
    ASSERT_TRUE(p.m && p.r);
    const std::string data = random_bytes(12345, 1);
    both_fd("write", p, [&](int fd) { return ::write(fd, data.data(), data.size()); });
    struct stat m, r;
    ASSERT_EQ(::fstat(p.m.get(), &m), 0);
    ASSERT_EQ(::fstat(p.r.get(), &r), 0);
    EXPECT_EQ(stat_differences(m, r), "");
    EXPECT_EQ(m.st_size, 12345);
    // Unlinked while open: still there, nlink 0.
    both_expect("unlink", success(), [](const std::string& b) { return ::unlink(P(b, "f").c_str()); });
    ASSERT_EQ(::fstat(p.m.get(), &m), 0);
    ASSERT_EQ(::fstat(p.r.get(), &r), 0);
    EXPECT_EQ(stat_differences(m, r), "");
    EXPECT_EQ(m.st_nlink, 0u);
    std::string back(data.size(), '\0');
    both_fd("pread after unlink", p, [&](int fd) { return ::pread(fd, back.data(), back.size(), 0); });
    EXPECT_TRUE(back == data);
}

// ---- setattr ---------------------------------------------------------------------------------

TEST_F(MountOps, Chmod) {
    make_file("f", "x", 0644);
    make_dir("d", 0755);
    for (mode_t mode : {0600, 0755, 04755, 02755, 06711, 01777, 0, 0444}) {
        SCOPED_TRACE(octal(mode));
        both_expect("chmod file", success(), [&](const std::string& b) {
            return ::chmod(P(b, "f").c_str(), mode);
        });
        same_stat("f");
        both_expect("chmod dir", success(), [&](const std::string& b) {
            return ::chmod(P(b, "d").c_str(), mode);
        });
        same_stat("d");
    }
    auto p = open_both("f", O_RDONLY);
    both_fd("fchmod", p, [](int fd) { return ::fchmod(fd, 0751); });
    same_stat("f");
    both_expect("chmod of a missing name", failure(ENOENT), [](const std::string& b) {
        return ::chmod(P(b, "missing").c_str(), 0644);
    });
}

TEST_F(MountOps, ChownAsRoot) {
    make_file("f", "data", 0644);
    make_dir("d");
    both_expect("symlink", success(), [](const std::string& b) {
        return ::symlink("f", P(b, "l").c_str());
    });
    both_expect("chown file", success(), [](const std::string& b) {
        return ::chown(P(b, "f").c_str(), 1234, 5678);
    });
    same_stat("f");
    both_expect("chgrp only", success(), [](const std::string& b) {
        return ::chown(P(b, "f").c_str(), static_cast<uid_t>(-1), 42);
    });
    same_stat("f");
    both_expect("chown dir", success(), [](const std::string& b) {
        return ::chown(P(b, "d").c_str(), 4321, 8765);
    });
    same_stat("d");
    both_expect("lchown symlink", success(), [](const std::string& b) {
        return ::lchown(P(b, "l").c_str(), 777, 888);
    });
    same_stat("l");
    same_stat("f");  // the target is untouched by lchown
    auto p = open_both("f", O_RDONLY);
    both_fd("fchown", p, [](int fd) { return ::fchown(fd, 55, 66); });
    same_stat("f");
    // chown clears setuid/setgid of a regular file, even when root does it.
    both_expect("chmod 06755", success(), [](const std::string& b) {
        return ::chmod(P(b, "f").c_str(), 06755);
    });
    both_expect("chown setuid file", success(), [](const std::string& b) {
        return ::chown(P(b, "f").c_str(), 99, 99);
    });
    struct stat st;
    same_stat("f", false, false, &st);
    EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST_F(MountOps, TruncateUpAndDown) {
    const std::string data = random_bytes(70000, 2);
    make_file("f", data);
    for (off_t size : {200000, 100000, 4096, 4095, 1, 0, 65537, 70000}) {
        SCOPED_TRACE(size);
        both_expect("truncate", success(), [&](const std::string& b) {
            return ::truncate(P(b, "f").c_str(), size);
        });
        same_stat("f");
        same_content("f");
    }
    auto p = open_both("f", O_RDWR);
    for (off_t size : {123457, 3, 8192, 0, 1 << 20}) {
        SCOPED_TRACE(size);
        both_fd("ftruncate", p, [&](int fd) { return ::ftruncate(fd, size); });
        same_stat("f");
        same_content("f");
    }
    both_expect("truncate to a negative size", failure(EINVAL), [](const std::string& b) {
        return ::truncate(P(b, "f").c_str(), -1);
    });
    make_dir("d");
    both_expect("truncate a directory", failure(EISDIR), [](const std::string& b) {
        return ::truncate(P(b, "d").c_str(), 0);
    });
    auto ro = open_both("f", O_RDONLY);
    both_fd("ftruncate of a read-only descriptor", ro, [](int fd) { return ::ftruncate(fd, 10); });
}

TEST_F(MountOps, UtimensatExplicitTimes) {
    make_file("f", "abc");
    make_dir("d");
    both_expect("symlink", success(), [](const std::string& b) {
        return ::symlink("f", P(b, "l").c_str());
    });
    const timespec times[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
    for (const char* rel : {"f", "d"}) {
        SCOPED_TRACE(rel);
        both_expect("utimensat", success(), [&](const std::string& b) {
            return ::utimensat(AT_FDCWD, P(b, rel).c_str(), times, 0);
        });
        struct stat st;
        same_stat(rel, false, /*times=*/true, &st);
        EXPECT_EQ(st.st_atim.tv_sec, times[0].tv_sec);
        EXPECT_EQ(st.st_atim.tv_nsec, times[0].tv_nsec);
        EXPECT_EQ(st.st_mtim.tv_sec, times[1].tv_sec);
        EXPECT_EQ(st.st_mtim.tv_nsec, times[1].tv_nsec);
    }
    const timespec link_times[2] = {{1100000000, 1}, {1200000000, 999999999}};
    both_expect("utimensat AT_SYMLINK_NOFOLLOW", success(), [&](const std::string& b) {
        return ::utimensat(AT_FDCWD, P(b, "l").c_str(), link_times, AT_SYMLINK_NOFOLLOW);
    });
    struct stat st;
    same_stat("l", false, true, &st);
    EXPECT_EQ(st.st_mtim.tv_sec, link_times[1].tv_sec);
    EXPECT_EQ(st.st_mtim.tv_nsec, link_times[1].tv_nsec);
    same_stat("f", false, true);  // the target keeps its own times
    auto p = open_both("f", O_RDWR);
    const timespec ftimes[2] = {{1300000000, 5}, {1400000000, 6}};
    both_fd("futimens", p, [&](int fd) { return ::futimens(fd, ftimes); });
    same_stat("f", false, true, &st);
    EXPECT_EQ(st.st_mtim.tv_sec, ftimes[1].tv_sec);
    EXPECT_EQ(st.st_mtim.tv_nsec, ftimes[1].tv_nsec);
}

TEST_F(MountOps, UtimensatNowAndOmit) {
    make_file("f", "abc");
    const timespec fixed[2] = {{1000000000, 111}, {1000000001, 222}};
    both_expect("utimensat explicit", success(), [&](const std::string& b) {
        return ::utimensat(AT_FDCWD, P(b, "f").c_str(), fixed, 0);
    });
    const timespec before = now_realtime();
    const timespec omit_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    both_expect("utimensat OMIT/NOW", success(), [&](const std::string& b) {
        return ::utimensat(AT_FDCWD, P(b, "f").c_str(), omit_now, 0);
    });
    const timespec after = now_realtime();
    struct stat m, r;
    ASSERT_EQ(::lstat(mnt("f").c_str(), &m), 0);
    ASSERT_EQ(::lstat(ref("f").c_str(), &r), 0);
    EXPECT_EQ(m.st_atim.tv_sec, fixed[0].tv_sec) << "UTIME_OMIT changed atime";
    EXPECT_EQ(m.st_atim.tv_nsec, fixed[0].tv_nsec) << "UTIME_OMIT changed atime";
    EXPECT_EQ(r.st_atim.tv_nsec, fixed[0].tv_nsec);
    // UTIME_NOW: the current time (the clock's coarse granularity allows one tick of slack).
    EXPECT_GE(m.st_mtim.tv_sec, before.tv_sec - 1);
    EXPECT_LE(m.st_mtim.tv_sec, after.tv_sec + 1);
    EXPECT_GE(r.st_mtim.tv_sec, before.tv_sec - 1);

    const timespec now_omit[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
    const timespec fixed2[2] = {{1000000002, 333}, {1000000003, 444}};
    both_expect("utimensat explicit again", success(), [&](const std::string& b) {
        return ::utimensat(AT_FDCWD, P(b, "f").c_str(), fixed2, 0);
    });
    both_expect("utimensat NOW/OMIT", success(), [&](const std::string& b) {
        return ::utimensat(AT_FDCWD, P(b, "f").c_str(), now_omit, 0);
    });
    const timespec after2 = now_realtime();
    ASSERT_EQ(::lstat(mnt("f").c_str(), &m), 0);
    EXPECT_EQ(m.st_mtim.tv_sec, fixed2[1].tv_sec) << "UTIME_OMIT changed mtime";
    EXPECT_EQ(m.st_mtim.tv_nsec, fixed2[1].tv_nsec) << "UTIME_OMIT changed mtime";
    EXPECT_GE(m.st_atim.tv_sec, before.tv_sec - 1);
    EXPECT_LE(m.st_atim.tv_sec, after2.tv_sec + 1);
    // Both omitted: nothing changes.
    const timespec omit_omit[2] = {{0, UTIME_OMIT}, {0, UTIME_OMIT}};
    both_expect("utimensat OMIT/OMIT", success(), [&](const std::string& b) {
        return ::utimensat(AT_FDCWD, P(b, "f").c_str(), omit_omit, 0);
    });
    struct stat m2;
    ASSERT_EQ(::lstat(mnt("f").c_str(), &m2), 0);
    EXPECT_EQ(m2.st_mtim.tv_nsec, fixed2[1].tv_nsec);
    EXPECT_EQ(m2.st_atim.tv_sec, m.st_atim.tv_sec);
    EXPECT_EQ(m2.st_atim.tv_nsec, m.st_atim.tv_nsec);
}

// ---- readlink, symlink -----------------------------------------------------------------------

TEST_F(MountOps, Readlink) {
    const std::string long_target(4000, 'x');
    const std::vector<std::string> targets = {"target", "../up/and/away", "/absolute/path",
                                              "with space and ünïcode", long_target};
    for (size_t i = 0; i < targets.size(); ++i) {
        const std::string name = "l" + std::to_string(i);
        both_expect("symlink " + name, success(), [&](const std::string& b) {
            return ::symlink(targets[i].c_str(), P(b, name).c_str());
        });
        same_stat(name);
        std::string m(5000, '\0'), r(5000, '\0');
        Outcome om = capture([&] { return ::readlink(mnt(name).c_str(), m.data(), m.size()); });
        Outcome orf = capture([&] { return ::readlink(ref(name).c_str(), r.data(), r.size()); });
        EXPECT_EQ(om, orf) << "readlink " << name;
        ASSERT_TRUE(om.ok());
        m.resize(static_cast<size_t>(om.rv));
        EXPECT_EQ(m, targets[i]);
    }
    // A buffer shorter than the target: truncated to the buffer, both sides alike.
    char small_m[4] = {}, small_r[4] = {};
    Outcome om = capture([&] { return ::readlink(mnt("l0").c_str(), small_m, sizeof small_m); });
    Outcome orf = capture([&] { return ::readlink(ref("l0").c_str(), small_r, sizeof small_r); });
    EXPECT_EQ(om, orf);
    EXPECT_EQ(std::string(small_m, 4), std::string(small_r, 4));
    make_file("f", "x");
    char buf[64];
    both_expect("readlink of a regular file", failure(EINVAL), [&](const std::string& b) {
        return ::readlink(P(b, "f").c_str(), buf, sizeof buf);
    });
    both_expect("readlink of a missing name", failure(ENOENT), [&](const std::string& b) {
        return ::readlink(P(b, "missing").c_str(), buf, sizeof buf);
    });
}

TEST_F(MountOps, Symlink) {
    make_file("f", "target content");
    make_dir("d");
    both_expect("relative symlink", success(), [](const std::string& b) {
        return ::symlink("../f", P(b, "d/rel").c_str());
    });
    both_expect("dangling symlink", success(), [](const std::string& b) {
        return ::symlink("nowhere", P(b, "dangling").c_str());
    });
    both_expect("symlink to a directory", success(), [](const std::string& b) {
        return ::symlink("d", P(b, "dirlink").c_str());
    });
    for (const char* rel : {"d/rel", "dangling", "dirlink"}) {
        SCOPED_TRACE(rel);
        same_stat(rel);
        same_stat(rel, true);
    }
    same_content("d/rel");
    both_expect("symlink over an existing name", failure(EEXIST), [](const std::string& b) {
        return ::symlink("x", P(b, "f").c_str());
    });
    both_expect("symlink in a missing directory", failure(ENOENT), [](const std::string& b) {
        return ::symlink("x", P(b, "missing/l").c_str());
    });
    both_expect("path through a symlink to a directory", success(), [](const std::string& b) {
        return ::mkdir(P(b, "dirlink/sub").c_str(), 0700);
    });
    same_stat("d/sub");
}

// ---- mknod, mkdir ----------------------------------------------------------------------------

TEST_F(MountOps, MknodFifoSocketDevices) {
    both_expect("mkfifo", success(), [](const std::string& b) {
        return ::mkfifo(P(b, "fifo").c_str(), 0620);
    });
    both_expect("mknod socket", success(), [](const std::string& b) {
        return ::mknod(P(b, "sock").c_str(), S_IFSOCK | 0755, 0);
    });
    both_expect("mknod char device", success(), [](const std::string& b) {
        return ::mknod(P(b, "null").c_str(), S_IFCHR | 0666, makedev(1, 3));
    });
    both_expect("mknod block device", success(), [](const std::string& b) {
        return ::mknod(P(b, "blk").c_str(), S_IFBLK | 0600, makedev(7, 200));
    });
    both_expect("mknod regular file", success(), [](const std::string& b) {
        return ::mknod(P(b, "reg").c_str(), S_IFREG | 0604, 0);
    });
    // A unix socket made by bind().
    both_expect("bind a unix socket", success(), [](const std::string& b) {
        int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0)
            return -1;
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::string path = P(b, "bound");
        std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
        int rv = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        int err = errno;
        ::close(s);
        errno = err;
        return rv;
    });
    for (const char* rel : {"fifo", "sock", "null", "blk", "reg", "bound"}) {
        SCOPED_TRACE(rel);
        same_stat(rel);
    }
    struct stat st;
    ASSERT_EQ(::lstat(mnt("null").c_str(), &st), 0);
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(st.st_rdev, makedev(1, 3));
    ASSERT_EQ(::lstat(backing("blk").c_str(), &st), 0);
    EXPECT_TRUE(S_ISBLK(st.st_mode));
    EXPECT_EQ(st.st_rdev, makedev(7, 200));
    both_expect("mknod over an existing name", failure(EEXIST), [](const std::string& b) {
        return ::mkfifo(P(b, "reg").c_str(), 0600);
    });
    // A fifo made through the mount works as a fifo.
    Fd rd(::open(mnt("fifo").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
    ASSERT_TRUE(rd) << errno_name(errno);
    Fd wr(::open(mnt("fifo").c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    ASSERT_TRUE(wr) << errno_name(errno);
    ASSERT_EQ(::write(wr.get(), "ping", 4), 4);
    char buf[8] = {};
    EXPECT_EQ(::read(rd.get(), buf, sizeof buf), 4);
    EXPECT_EQ(std::string(buf), "ping");
}

TEST_F(MountOps, Mkdir) {
    for (mode_t mode : {0755, 0700, 01777, 02750, 0}) {
        const std::string name = "d" + octal(mode);
        SCOPED_TRACE(name);
        both_expect("mkdir", success(), [&](const std::string& b) {
            return ::mkdir(P(b, name).c_str(), mode);
        });
        same_stat(name);
    }
    make_dir("a");
    make_dir("a/b");
    make_dir("a/b/c");
    make_dir("a/b2");
    same_stat(".");
    same_stat("a");
    same_stat("a/b");
    same_stat("a/b/c");
    both_expect("mkdir over an existing directory", failure(EEXIST), [](const std::string& b) {
        return ::mkdir(P(b, "a").c_str(), 0755);
    });
    make_file("f", "");
    both_expect("mkdir over an existing file", failure(EEXIST), [](const std::string& b) {
        return ::mkdir(P(b, "f").c_str(), 0755);
    });
    both_expect("mkdir under a file", failure(ENOTDIR), [](const std::string& b) {
        return ::mkdir(P(b, "f/x").c_str(), 0755);
    });
    both_expect("mkdir in a missing directory", failure(ENOENT), [](const std::string& b) {
        return ::mkdir(P(b, "missing/x").c_str(), 0755);
    });
}

// ---- unlink, rmdir ---------------------------------------------------------------------------

TEST_F(MountOps, Unlink) {
    make_file("f", "some data");
    make_dir("d");
    both_expect("symlink", success(), [](const std::string& b) {
        return ::symlink("f", P(b, "l").c_str());
    });
    both_expect("unlink a symlink", success(), [](const std::string& b) {
        return ::unlink(P(b, "l").c_str());
    });
    same_stat("l");
    same_stat("f");  // the target stays
    both_expect("unlink a file", success(), [](const std::string& b) {
        return ::unlink(P(b, "f").c_str());
    });
    same_stat("f");
    both_expect("unlink again", failure(ENOENT), [](const std::string& b) {
        return ::unlink(P(b, "f").c_str());
    });
    both_expect("unlink a directory", failure(EISDIR), [](const std::string& b) {
        return ::unlink(P(b, "d").c_str());
    });
    both_expect("unlink under a missing directory", failure(ENOENT), [](const std::string& b) {
        return ::unlink(P(b, "missing/x").c_str());
    });
    make_file("g", "x");
    both_expect("unlink under a file", failure(ENOTDIR), [](const std::string& b) {
        return ::unlink(P(b, "g/x").c_str());
    });
    same_stat(".");
}

TEST_F(MountOps, Rmdir) {
    make_dir("d");
    make_dir("full");
    make_file("full/f", "x");
    make_dir("withsub");
    make_dir("withsub/sub");
    make_file("f", "x");
    both_expect("rmdir an empty directory", success(), [](const std::string& b) {
        return ::rmdir(P(b, "d").c_str());
    });
    same_stat("d");
    same_stat(".");
    both_expect("rmdir a directory with a file", failure(ENOTEMPTY), [](const std::string& b) {
        return ::rmdir(P(b, "full").c_str());
    });
    both_expect("rmdir a directory with a subdirectory", failure(ENOTEMPTY),
                [](const std::string& b) { return ::rmdir(P(b, "withsub").c_str()); });
    both_expect("rmdir a file", failure(ENOTDIR), [](const std::string& b) {
        return ::rmdir(P(b, "f").c_str());
    });
    both_expect("rmdir a missing name", failure(ENOENT), [](const std::string& b) {
        return ::rmdir(P(b, "missing").c_str());
    });
    both_expect("rmdir of .", failure(EINVAL), [](const std::string& b) {
        return ::rmdir(P(b, "withsub/sub/.").c_str());
    });
    both_expect("rmdir of ..", failure(ENOTEMPTY), [](const std::string& b) {
        return ::rmdir(P(b, "withsub/sub/..").c_str());
    });
    both_expect("rmdir a subdirectory", success(), [](const std::string& b) {
        return ::rmdir(P(b, "withsub/sub").c_str());
    });
    same_stat("withsub");
    both_expect("rmdir the emptied directory", success(), [](const std::string& b) {
        return ::rmdir(P(b, "withsub").c_str());
    });
}

// ---- rename ----------------------------------------------------------------------------------

TEST_F(MountOps, RenamePlain) {
    make_file("a", "content of a");
    make_dir("d1");
    make_dir("d2");
    make_file("d1/inner", "inner");
    struct stat before;
    ASSERT_EQ(::lstat(mnt("a").c_str(), &before), 0);
    both_expect("rename in one directory", success(), [](const std::string& b) {
        return ::rename(P(b, "a").c_str(), P(b, "b").c_str());
    });
    same_stat("a");
    same_stat("b");
    same_content("b");
    struct stat after;
    ASSERT_EQ(::lstat(mnt("b").c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino) << "rename changed the inode number";
    both_expect("rename across directories", success(), [](const std::string& b) {
        return ::rename(P(b, "b").c_str(), P(b, "d2/moved").c_str());
    });
    same_content("d2/moved");
    both_expect("rename a directory into another", success(), [](const std::string& b) {
        return ::rename(P(b, "d1").c_str(), P(b, "d2/d1").c_str());
    });
    same_stat(".");
    same_stat("d2");
    same_stat("d2/d1");
    same_content("d2/d1/inner");
    both_expect("rename a missing name", failure(ENOENT), [](const std::string& b) {
        return ::rename(P(b, "missing").c_str(), P(b, "x").c_str());
    });
    both_expect("rename into a missing directory", failure(ENOENT), [](const std::string& b) {
        return ::rename(P(b, "d2/moved").c_str(), P(b, "missing/x").c_str());
    });
    both_expect("rename to the same name", success(), [](const std::string& b) {
        return ::rename(P(b, "d2/moved").c_str(), P(b, "d2/moved").c_str());
    });
    same_content("d2/moved");
}

TEST_F(MountOps, RenameOverExisting) {
    make_file("src", "the source");
    make_file("dst", "the destination, longer");
    both_expect("rename over a file", success(), [](const std::string& b) {
        return ::rename(P(b, "src").c_str(), P(b, "dst").c_str());
    });
    same_stat("src");
    same_stat("dst");
    same_content("dst");
    EXPECT_EQ(read_whole(mnt("dst")), "the source");

    make_dir("da");
    make_file("da/x", "x");
    make_dir("empty");
    make_dir("full");
    make_file("full/y", "y");
    both_expect("directory over an empty directory", success(), [](const std::string& b) {
        return ::rename(P(b, "da").c_str(), P(b, "empty").c_str());
    });
    same_content("empty/x");
    both_expect("directory over a non-empty directory", failure(ENOTEMPTY),
                [](const std::string& b) {
                    return ::rename(P(b, "empty").c_str(), P(b, "full").c_str());
                });
    both_expect("file over a directory", failure(EISDIR), [](const std::string& b) {
        return ::rename(P(b, "dst").c_str(), P(b, "full").c_str());
    });
    both_expect("directory over a file", failure(ENOTDIR), [](const std::string& b) {
        return ::rename(P(b, "full").c_str(), P(b, "dst").c_str());
    });
    both_expect("directory into itself", failure(EINVAL), [](const std::string& b) {
        return ::rename(P(b, "full").c_str(), P(b, "full/inside").c_str());
    });
    // Two names of one inode: rename does nothing, both names stay.
    both_expect("link", success(), [](const std::string& b) {
        return ::link(P(b, "dst").c_str(), P(b, "dst2").c_str());
    });
    both_expect("rename onto another link of the same file", success(), [](const std::string& b) {
        return ::rename(P(b, "dst").c_str(), P(b, "dst2").c_str());
    });
    same_stat("dst");
    same_stat("dst2");
    // Over a file that is open: the open descriptor keeps the old content.
    make_file("victim", "old content");
    make_file("newer", "new content");
    auto p = open_both("victim", O_RDONLY);
    both_expect("rename over an open file", success(), [](const std::string& b) {
        return ::rename(P(b, "newer").c_str(), P(b, "victim").c_str());
    });
    char buf[32] = {};
    both_fd("read the replaced file", p, [&](int fd) { return ::pread(fd, buf, sizeof buf - 1, 0); });
    EXPECT_EQ(std::string(buf), "old content");
    same_content("victim");
}

TEST_F(MountOps, RenameNoreplace) {
    make_file("a", "a");
    make_file("b", "b");
    both_expect("RENAME_NOREPLACE over an existing file", failure(EEXIST), [](const std::string& b) {
        return ::renameat2(AT_FDCWD, P(b, "a").c_str(), AT_FDCWD, P(b, "b").c_str(),
                           RENAME_NOREPLACE);
    });
    same_content("a");
    same_content("b");
    both_expect("RENAME_NOREPLACE to a free name", success(), [](const std::string& b) {
        return ::renameat2(AT_FDCWD, P(b, "a").c_str(), AT_FDCWD, P(b, "c").c_str(),
                           RENAME_NOREPLACE);
    });
    same_stat("a");
    same_content("c");
    make_dir("d");
    both_expect("RENAME_NOREPLACE over a directory", failure(EEXIST), [](const std::string& b) {
        return ::renameat2(AT_FDCWD, P(b, "c").c_str(), AT_FDCWD, P(b, "d").c_str(),
                           RENAME_NOREPLACE);
    });
}

TEST_F(MountOps, RenameExchangeFileAndDirectory) {
    make_file("f", "file content");
    make_dir("d", 0710);
    make_file("d/inside", "inside");
    both_expect("RENAME_EXCHANGE", success(), [](const std::string& b) {
        return ::renameat2(AT_FDCWD, P(b, "f").c_str(), AT_FDCWD, P(b, "d").c_str(),
                           RENAME_EXCHANGE);
    });
    struct stat st;
    same_stat("f", false, false, &st);
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << "after the exchange 'f' should be the directory";
    same_stat("d", false, false, &st);
    EXPECT_TRUE(S_ISREG(st.st_mode)) << "after the exchange 'd' should be the file";
    same_content("d");
    same_content("f/inside");
    EXPECT_EQ(read_whole(mnt("d")), "file content");
    both_expect("RENAME_EXCHANGE with a missing name", failure(ENOENT), [](const std::string& b) {
        return ::renameat2(AT_FDCWD, P(b, "f").c_str(), AT_FDCWD, P(b, "missing").c_str(),
                           RENAME_EXCHANGE);
    });
    both_expect("RENAME_EXCHANGE|RENAME_NOREPLACE", failure(EINVAL), [](const std::string& b) {
        return ::renameat2(AT_FDCWD, P(b, "f").c_str(), AT_FDCWD, P(b, "d").c_str(),
                           RENAME_EXCHANGE | RENAME_NOREPLACE);
    });
}

// ---- link ------------------------------------------------------------------------------------

TEST_F(MountOps, HardLinks) {
    make_file("f", "linked data");
    make_dir("d");
    struct stat first, st;
    same_stat("f", false, false, &first);
    EXPECT_EQ(first.st_nlink, 1u);
    both_expect("link", success(), [](const std::string& b) {
        return ::link(P(b, "f").c_str(), P(b, "f2").c_str());
    });
    both_expect("link into a subdirectory", success(), [](const std::string& b) {
        return ::link(P(b, "f2").c_str(), P(b, "d/f3").c_str());
    });
    for (const char* rel : {"f", "f2", "d/f3"}) {
        SCOPED_TRACE(rel);
        same_stat(rel, false, false, &st);
        EXPECT_EQ(st.st_nlink, 3u);
        EXPECT_EQ(st.st_ino, first.st_ino) << "a hard link shows another inode number";
    }
    // Writes through one name are seen through the others.
    {
        Fd fd(::open(mnt("d/f3").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        ASSERT_TRUE(fd);
        ASSERT_EQ(::write(fd.get(), "+more", 5), 5);
        Fd rfd(::open(ref("d/f3").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        ASSERT_EQ(::write(rfd.get(), "+more", 5), 5);
    }
    same_content("f");
    EXPECT_EQ(read_whole(mnt("f")), "linked data+more");
    both_expect("unlink one link", success(), [](const std::string& b) {
        return ::unlink(P(b, "f").c_str());
    });
    same_stat("f2", false, false, &st);
    EXPECT_EQ(st.st_nlink, 2u);
    same_stat("d/f3");
    both_expect("link to an existing name", failure(EEXIST), [](const std::string& b) {
        return ::link(P(b, "f2").c_str(), P(b, "d/f3").c_str());
    });
    both_expect("link a directory", failure(EPERM), [](const std::string& b) {
        return ::link(P(b, "d").c_str(), P(b, "dlink").c_str());
    });
    both_expect("link a missing name", failure(ENOENT), [](const std::string& b) {
        return ::link(P(b, "missing").c_str(), P(b, "x").c_str());
    });
    // A hard link to a symlink (not to its target).
    both_expect("symlink", success(), [](const std::string& b) {
        return ::symlink("f2", P(b, "sl").c_str());
    });
    both_expect("linkat of a symlink", success(), [](const std::string& b) {
        return ::linkat(AT_FDCWD, P(b, "sl").c_str(), AT_FDCWD, P(b, "sl2").c_str(), 0);
    });
    same_stat("sl2", false, false, &st);
    EXPECT_TRUE(S_ISLNK(st.st_mode));
    EXPECT_EQ(st.st_nlink, 2u);
    same_stat("f2");
    // linkat following the symlink links its target.
    both_expect("linkat AT_SYMLINK_FOLLOW", success(), [](const std::string& b) {
        return ::linkat(AT_FDCWD, P(b, "sl").c_str(), AT_FDCWD, P(b, "f4").c_str(),
                        AT_SYMLINK_FOLLOW);
    });
    same_stat("f4", false, false, &st);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_nlink, 3u);
    EXPECT_EQ(st.st_ino, first.st_ino);
}

// ---- open, create ----------------------------------------------------------------------------

TEST_F(MountOps, OpenCreateExclusive) {
    auto p = open_both("new", O_WRONLY | O_CREAT | O_EXCL, 0640);
    ASSERT_TRUE(p.m && p.r);
    same_stat("new");
    auto again = open_both("new", O_WRONLY | O_CREAT | O_EXCL, 0640);
    EXPECT_FALSE(again.m);
    both_expect("O_CREAT|O_EXCL of an existing file", failure(EEXIST), [](const std::string& b) {
        return opened(::open(P(b, "new").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    });
    both_expect("symlink", success(), [](const std::string& b) {
        return ::symlink("target", P(b, "dangling").c_str());
    });
    both_expect("O_CREAT|O_EXCL on a dangling symlink", failure(EEXIST), [](const std::string& b) {
        return opened(::open(P(b, "dangling").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    });
    // Without O_EXCL, O_CREAT through a dangling symlink creates its target.
    {
        auto q = open_both("dangling", O_RDWR | O_CREAT, 0600);
        EXPECT_TRUE(q.m && q.r);
    }
    same_stat("target");
    both_expect("open a missing file", failure(ENOENT), [](const std::string& b) {
        return opened(::open(P(b, "missing").c_str(), O_RDONLY | O_CLOEXEC));
    });
    both_expect("O_NOFOLLOW on a symlink", failure(ELOOP), [](const std::string& b) {
        return opened(::open(P(b, "dangling").c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    });
    for (mode_t mode : {0777, 0600, 04755, 0}) {
        const std::string name = "m" + octal(mode);
        auto q = open_both(name, O_RDWR | O_CREAT | O_EXCL, mode);
        EXPECT_TRUE(q.m && q.r);
        same_stat(name);
    }
}

TEST_F(MountOps, OpenTruncate) {
    make_file("f", random_bytes(50000, 3));
    {
        auto p = open_both("f", O_WRONLY | O_TRUNC);
        ASSERT_TRUE(p.m && p.r);
        same_stat("f");
        both_fd("write after O_TRUNC", p, [](int fd) { return ::write(fd, "short", 5); });
    }
    same_stat("f");
    same_content("f");
    EXPECT_EQ(read_whole(mnt("f")), "short");
    {
        auto p = open_both("f", O_RDWR | O_TRUNC | O_CREAT, 0600);
        ASSERT_TRUE(p.m && p.r);
    }
    same_stat("f");
    make_file("g", "not empty");
    {
        auto p = open_both("g", O_RDONLY | O_TRUNC);
        EXPECT_EQ(static_cast<bool>(p.m), static_cast<bool>(p.r));
    }
    same_stat("g");
    same_content("g");
}

TEST_F(MountOps, OpenAppendWritesAtTheEnd) {
    make_file("f", "hello");
    auto p = open_both("f", O_WRONLY | O_APPEND);
    ASSERT_TRUE(p.m && p.r);
    both_fd("lseek to 0", p, [](int fd) { return ::lseek(fd, 0, SEEK_SET); });
    both_fd("append write", p, [](int fd) { return ::write(fd, "world", 5); });
    both_fd("position after the write", p, [](int fd) { return ::lseek(fd, 0, SEEK_CUR); });
    // pwrite on an O_APPEND descriptor appends too on Linux, whatever the offset.
    both_fd("pwrite at 0", p, [](int fd) { return ::pwrite(fd, "!", 1, 0); });
    const std::string big = random_bytes(300000, 4);
    both_fd("large append", p, [&](int fd) { return ::write(fd, big.data(), big.size()); });
    same_stat("f");
    same_content("f");
    EXPECT_EQ(read_whole(mnt("f")).substr(0, 11), "helloworld!");
    // A second appender and a plain writer interleaved.
    auto plain = open_both("f", O_WRONLY);
    both_fd("overwrite at 0", plain, [](int fd) { return ::pwrite(fd, "HE", 2, 0); });
    both_fd("append again", p, [](int fd) { return ::write(fd, "tail", 4); });
    same_stat("f");
    same_content("f");
}

// ---- read, write -----------------------------------------------------------------------------

TEST_F(MountOps, ReadWriteAtOffsets) {
    auto p = open_both("f", O_RDWR | O_CREAT | O_EXCL, 0644);
    ASSERT_TRUE(p.m && p.r);
    const std::string data = random_bytes(1 << 20, 5);
    struct Piece {
        off_t off;
        size_t len;
    };
    const std::vector<Piece> writes = {{0, 1},       {4095, 2},        {4096, 4096},
                                       {65536 + 13, 131072}, {1048576 + 7, 300001},
                                       {100, 1000000}, {3000000, 17}};
    for (const auto& w : writes) {
        SCOPED_TRACE(std::to_string(w.off) + "+" + std::to_string(w.len));
        both_fd("pwrite", p, [&](int fd) {
            return ::pwrite(fd, data.data() + (w.off % 1000), std::min(w.len, data.size() - 1000), w.off);
        });
        same_stat("f");
    }
    same_content("f");
    const std::vector<Piece> reads = {{0, 10},          {4090, 20},      {65536, 200000},
                                      {2999990, 100},   {3000000, 17},   {3000010, 100},
                                      {1234567, 654321}, {0, 4 << 20}};
    for (const auto& r : reads) {
        SCOPED_TRACE(std::to_string(r.off) + "+" + std::to_string(r.len));
        std::string bm(r.len, '\0'), br(r.len, '\0');
        Outcome om = capture([&] { return ::pread(p.m.get(), bm.data(), r.len, r.off); });
        Outcome orf = capture([&] { return ::pread(p.r.get(), br.data(), r.len, r.off); });
        EXPECT_EQ(om, orf);
        EXPECT_TRUE(bm == br) << "pread returned different bytes";
    }
    // The descriptor's own position: lseek, write, read.
    both_fd("lseek SEEK_SET", p, [](int fd) { return ::lseek(fd, 777, SEEK_SET); });
    both_fd("write at the position", p, [&](int fd) { return ::write(fd, data.data(), 5000); });
    both_fd("lseek SEEK_CUR", p, [](int fd) { return ::lseek(fd, -100, SEEK_CUR); });
    char m[300], r[300];
    both_fd("read at the position", p, [&](int fd) { return ::read(fd, fd == p.m.get() ? m : r, 300); });
    EXPECT_EQ(std::string(m, 300), std::string(r, 300));
    both_fd("lseek SEEK_END", p, [](int fd) { return ::lseek(fd, 10, SEEK_END); });
    both_fd("write past the end", p, [&](int fd) { return ::write(fd, "tail", 4); });
    both_fd("lseek to a negative offset", p, [](int fd) { return ::lseek(fd, -1, SEEK_SET); });
    same_stat("f");
    same_content("f");
}

TEST_F(MountOps, PreadPastEndOfFile) {
    make_file("f", random_bytes(10000, 6));
    auto p = open_both("f", O_RDONLY);
    char buf[8192];
    both_fd("pread at EOF", p, [&](int fd) { return ::pread(fd, buf, sizeof buf, 10000); });
    both_fd("pread past EOF", p, [&](int fd) { return ::pread(fd, buf, sizeof buf, 20000); });
    both_fd("pread far past EOF", p, [&](int fd) { return ::pread(fd, buf, sizeof buf, 1LL << 40); });
    Outcome o = both_fd("pread across EOF", p, [&](int fd) { return ::pread(fd, buf, sizeof buf, 9000); });
    EXPECT_EQ(o, success(1000));
    both_fd("pread at a negative offset", p, [&](int fd) { return ::pread(fd, buf, 10, -1); });
    both_fd("write to a read-only descriptor", p, [&](int fd) { return ::write(fd, "x", 1); });
    auto w = open_both("f", O_WRONLY);
    both_fd("read from a write-only descriptor", w, [&](int fd) { return ::read(fd, buf, 10); });
    both_fd("lseek to the end", p, [](int fd) { return ::lseek(fd, 0, SEEK_END); });
    both_fd("read at the end", p, [&](int fd) { return ::read(fd, buf, sizeof buf); });
}

TEST_F(MountOps, FlushAndClose) {
    auto p = open_both("f", O_RDWR | O_CREAT, 0644);
    ASSERT_TRUE(p.m && p.r);
    Fd dm(::dup(p.m.get())), dr(::dup(p.r.get()));
    ASSERT_TRUE(dm && dr);
    ASSERT_EQ(::write(dm.get(), "through the dup", 15), 15);
    ASSERT_EQ(::write(dr.get(), "through the dup", 15), 15);
    Outcome cm = dm.close(), cr = dr.close();
    EXPECT_EQ(cm, cr) << "close of a duplicate (flush)";
    EXPECT_EQ(cm, success());
    // The data is there for another opener while the first descriptor is still open.
    same_content("f");
    ASSERT_EQ(::write(p.m.get(), "+", 1), 1);
    ASSERT_EQ(::write(p.r.get(), "+", 1), 1);
    cm = p.m.close();
    cr = p.r.close();
    EXPECT_EQ(cm, success());
    EXPECT_EQ(cr, success());
    same_content("f");
    EXPECT_EQ(read_whole(mnt("f")), "through the dup+");
}

TEST_F(MountOps, FsyncAndFdatasync) {
    auto p = open_both("f", O_RDWR | O_CREAT, 0644);
    ASSERT_TRUE(p.m && p.r);
    const std::string data = random_bytes(200000, 7);
    both_fd("write", p, [&](int fd) { return ::write(fd, data.data(), data.size()); });
    EXPECT_EQ(both_fd("fsync", p, [](int fd) { return ::fsync(fd); }), success());
    both_fd("write more", p, [&](int fd) { return ::pwrite(fd, data.data(), 5000, 1000000); });
    EXPECT_EQ(both_fd("fdatasync", p, [](int fd) { return ::fdatasync(fd); }), success());
    auto ro = open_both("f", O_RDONLY);
    EXPECT_EQ(both_fd("fsync of a read-only descriptor", ro, [](int fd) { return ::fsync(fd); }),
              success());
    EXPECT_EQ(both_fd("fdatasync of a read-only descriptor", ro,
                      [](int fd) { return ::fdatasync(fd); }),
              success());
    same_content("f");
}

// ---- directories -----------------------------------------------------------------------------

TEST_F(MountOps, ReaddirNamesAndTypes) {
    make_dir("d");
    make_file("d/a", "a");
    make_file("d/b", "bb");
    make_dir("d/sub");
    both_expect("symlink", success(), [](const std::string& b) {
        return ::symlink("a", P(b, "d/link").c_str());
    });
    both_expect("mkfifo", success(), [](const std::string& b) {
        return ::mkfifo(P(b, "d/fifo").c_str(), 0600);
    });
    std::map<std::string, unsigned char> m, r;
    ASSERT_TRUE(list_dir(mnt("d"), &m)) << errno_name(errno);
    ASSERT_TRUE(list_dir(ref("d"), &r)) << errno_name(errno);
    EXPECT_EQ(m, r);
    EXPECT_EQ(m.size(), 5u);
    // d_ino is the inode number stat() shows.
    {
        DIR* dd = ::opendir(mnt("d").c_str());
        ASSERT_NE(dd, nullptr);
        while (dirent* e = ::readdir(dd)) {
            if (std::strcmp(e->d_name, "..") == 0)
                continue;
            struct stat st;
            ASSERT_EQ(::lstat(mnt("d/" + std::string(e->d_name)).c_str(), &st), 0) << e->d_name;
            EXPECT_EQ(e->d_ino, st.st_ino) << "d_ino of " << e->d_name;
        }
        ::closedir(dd);
    }
    // "." and ".." are listed too.
    DIR* dir = ::opendir(mnt("d").c_str());
    ASSERT_NE(dir, nullptr);
    std::set<std::string> all;
    while (dirent* e = ::readdir(dir))
        all.insert(e->d_name);
    ::closedir(dir);
    EXPECT_TRUE(all.count(".") && all.count("..")) << "'.' or '..' missing from the listing";
    // An empty directory and errors.
    make_dir("empty");
    ASSERT_TRUE(list_dir(mnt("empty"), &m));
    EXPECT_TRUE(m.empty());
    make_file("file", "x");
    both_expect("opendir of a file", failure(ENOTDIR), [](const std::string& b) {
        return opened(::open(P(b, "file").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    });
    both_expect("opendir of a missing name", failure(ENOENT), [](const std::string& b) {
        return opened(::open(P(b, "missing").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    });
}

TEST_F(MountOps, ReaddirOfTwoThousandEntries) {
    make_dir("big");
    for (int i = 0; i < 2000; ++i) {
        char name[96];
        std::snprintf(name, sizeof name, "big/entry-with-a-fairly-long-name-%05d", i);
        ASSERT_EQ(::mknod(mnt(name).c_str(), S_IFREG | 0644, 0), 0) << name << ": "
                                                                   << errno_name(errno);
        ASSERT_EQ(::mknod(ref(name).c_str(), S_IFREG | 0644, 0), 0) << name;
    }
    std::map<std::string, unsigned char> m, r, bk;
    ASSERT_TRUE(list_dir(mnt("big"), &m)) << errno_name(errno);
    ASSERT_TRUE(list_dir(ref("big"), &r));
    ASSERT_TRUE(list_dir(backing("big"), &bk));
    EXPECT_EQ(m.size(), 2000u);
    EXPECT_EQ(m, r);
    EXPECT_EQ(m, bk);
    // No name twice: count raw entries, too.
    DIR* dir = ::opendir(mnt("big").c_str());
    ASSERT_NE(dir, nullptr);
    size_t raw = 0;
    while (dirent* e = ::readdir(dir))
        raw += (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0);
    ::closedir(dir);
    EXPECT_EQ(raw, 2000u) << "the listing repeats or loses names";
    // Listed again after removing half of them.
    for (int i = 0; i < 2000; i += 2) {
        char name[96];
        std::snprintf(name, sizeof name, "big/entry-with-a-fairly-long-name-%05d", i);
        ASSERT_EQ(::unlink(mnt(name).c_str()), 0);
        ASSERT_EQ(::unlink(ref(name).c_str()), 0);
    }
    ASSERT_TRUE(list_dir(mnt("big"), &m));
    ASSERT_TRUE(list_dir(ref("big"), &r));
    EXPECT_EQ(m.size(), 1000u);
    EXPECT_EQ(m, r);
}

TEST_F(MountOps, TelldirSeekdirRestart) {
    make_dir("big");
    for (int i = 0; i < 2000; ++i) {
        char name[96];
        std::snprintf(name, sizeof name, "big/seekable-entry-name-%05d", i);
        ASSERT_EQ(::mknod(mnt(name).c_str(), S_IFREG | 0644, 0), 0) << errno_name(errno);
        ASSERT_EQ(::mknod(ref(name).c_str(), S_IFREG | 0644, 0), 0);
    }
    for (const std::string& base : {mnt(), ref()}) {
        SCOPED_TRACE(base);
        DIR* dir = ::opendir(P(base, "big").c_str());
        ASSERT_NE(dir, nullptr);
        std::vector<std::string> first_pass;
        long pos = -1;
        for (int i = 0; i < 2002; ++i) {
            if (i == 700)
                pos = ::telldir(dir);
            dirent* e = ::readdir(dir);
            if (!e)
                break;
            first_pass.push_back(e->d_name);
        }
        EXPECT_EQ(::readdir(dir), nullptr);
        ASSERT_EQ(first_pass.size(), 2002u);
        ::seekdir(dir, pos);
        std::vector<std::string> after_seek;
        while (dirent* e = ::readdir(dir))
            after_seek.push_back(e->d_name);
        EXPECT_EQ(after_seek, std::vector<std::string>(first_pass.begin() + 700, first_pass.end()))
            << "seekdir(telldir()) does not restart at the same entry";
        ::rewinddir(dir);
        std::vector<std::string> again;
        while (dirent* e = ::readdir(dir))
            again.push_back(e->d_name);
        EXPECT_EQ(again, first_pass) << "rewinddir does not list the same entries again";
        // Seek back to a position taken early, twice.
        ::rewinddir(dir);
        for (int i = 0; i < 5; ++i)
            ASSERT_NE(::readdir(dir), nullptr);
        long early = ::telldir(dir);
        dirent* e = ::readdir(dir);
        ASSERT_NE(e, nullptr);
        std::string expected = e->d_name;
        for (int k = 0; k < 2; ++k) {
            ::seekdir(dir, early);
            e = ::readdir(dir);
            ASSERT_NE(e, nullptr);
            EXPECT_EQ(expected, e->d_name);
        }
        ::closedir(dir);
    }
}

TEST_F(MountOps, Fsyncdir) {
    make_dir("d");
    make_file("d/f", "x");
    for (const char* rel : {"d", "."}) {
        SCOPED_TRACE(rel);
        Pair p = open_both(rel, O_RDONLY | O_DIRECTORY);
        ASSERT_TRUE(p.m && p.r);
        EXPECT_EQ(both_fd("fsync of a directory", p, [](int fd) { return ::fsync(fd); }), success());
        EXPECT_EQ(both_fd("fdatasync of a directory", p, [](int fd) { return ::fdatasync(fd); }),
                  success());
    }
}

// ---- statfs ----------------------------------------------------------------------------------

TEST_F(MountOps, StatfsMatchesTheBackingFilesystem) {
    struct statvfs m, bk;
    ASSERT_EQ(::statvfs(mnt().c_str(), &m), 0) << errno_name(errno);
    ASSERT_EQ(::statvfs(backing().c_str(), &bk), 0);
    EXPECT_EQ(m.f_bsize, bk.f_bsize);
    EXPECT_EQ(m.f_frsize, bk.f_frsize);
    EXPECT_EQ(m.f_blocks, bk.f_blocks);
    EXPECT_EQ(m.f_files, bk.f_files);
    EXPECT_EQ(m.f_namemax, bk.f_namemax);
    make_file("f", "x");
    Fd fd(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    struct statvfs f;
    ASSERT_EQ(::fstatvfs(fd.get(), &f), 0);
    EXPECT_EQ(f.f_bsize, bk.f_bsize);
    EXPECT_EQ(f.f_blocks, bk.f_blocks);
}

// ---- xattrs ----------------------------------------------------------------------------------

TEST_F(MountOps, ExtendedAttributes) {
    make_file("f", "x");
    make_dir("d");
    const std::string big(3000, 'v');
    for (const char* rel : {"f", "d"}) {
        SCOPED_TRACE(rel);
        auto path = [rel](const std::string& b) { return P(b, rel); };
        both_expect("getxattr of a missing name", failure(ENODATA), [&](const std::string& b) {
            char buf[16];
            return ::getxattr(path(b).c_str(), "user.missing", buf, sizeof buf);
        });
        both_expect("listxattr size query, none set", success(0), [&](const std::string& b) {
            return ::listxattr(path(b).c_str(), nullptr, 0);
        });
        both_expect("setxattr", success(), [&](const std::string& b) {
            return ::setxattr(path(b).c_str(), "user.greeting", "hello", 5, 0);
        });
        both_expect("setxattr XATTR_CREATE of an existing name", failure(EEXIST),
                    [&](const std::string& b) {
                        return ::setxattr(path(b).c_str(), "user.greeting", "x", 1, XATTR_CREATE);
                    });
        both_expect("setxattr XATTR_REPLACE of a missing name", failure(ENODATA),
                    [&](const std::string& b) {
                        return ::setxattr(path(b).c_str(), "user.other", "x", 1, XATTR_REPLACE);
                    });
        both_expect("setxattr XATTR_CREATE", success(), [&](const std::string& b) {
            return ::setxattr(path(b).c_str(), "user.big", big.data(), big.size(), XATTR_CREATE);
        });
        both_expect("setxattr of an empty value", success(), [&](const std::string& b) {
            return ::setxattr(path(b).c_str(), "user.empty", "", 0, 0);
        });
        both_expect("getxattr size query", success(5), [&](const std::string& b) {
            return ::getxattr(path(b).c_str(), "user.greeting", nullptr, 0);
        });
        both_expect("getxattr size query of a large value", success(3000), [&](const std::string& b) {
            return ::getxattr(path(b).c_str(), "user.big", nullptr, 0);
        });
        both_expect("getxattr of an empty value", success(0), [&](const std::string& b) {
            char buf[4];
            return ::getxattr(path(b).c_str(), "user.empty", buf, sizeof buf);
        });
        both_expect("getxattr into a small buffer", failure(ERANGE), [&](const std::string& b) {
            char buf[3];
            return ::getxattr(path(b).c_str(), "user.greeting", buf, sizeof buf);
        });
        char vm[4096] = {}, vr[4096] = {};
        Outcome om = capture([&] { return ::getxattr(mnt(rel).c_str(), "user.big", vm, sizeof vm); });
        Outcome orf = capture([&] { return ::getxattr(ref(rel).c_str(), "user.big", vr, sizeof vr); });
        EXPECT_EQ(om, orf);
        EXPECT_EQ(std::string(vm, 3000), big);
        om = capture([&] { return ::getxattr(mnt(rel).c_str(), "user.greeting", vm, sizeof vm); });
        EXPECT_EQ(om, success(5));
        EXPECT_EQ(std::string(vm, 5), "hello");
        // listxattr: the same set of names.
        Outcome lm = capture([&] { return ::listxattr(mnt(rel).c_str(), nullptr, 0); });
        Outcome lr = capture([&] { return ::listxattr(ref(rel).c_str(), nullptr, 0); });
        EXPECT_EQ(lm, lr) << "listxattr size query";
        auto names = [](const char* buf, long long n) {
            std::set<std::string> s;
            for (long long i = 0; i < n;) {
                std::string name(buf + i);
                s.insert(name);
                i += static_cast<long long>(name.size()) + 1;
            }
            return s;
        };
        lm = capture([&] { return ::listxattr(mnt(rel).c_str(), vm, sizeof vm); });
        lr = capture([&] { return ::listxattr(ref(rel).c_str(), vr, sizeof vr); });
        EXPECT_EQ(lm, lr);
        ASSERT_TRUE(lm.ok());
        EXPECT_EQ(names(vm, lm.rv), names(vr, lr.rv));
        EXPECT_EQ(names(vm, lm.rv),
                  (std::set<std::string>{"user.greeting", "user.big", "user.empty"}));
        both_expect("listxattr into a small buffer", failure(ERANGE), [&](const std::string& b) {
            char buf[5];
            return ::listxattr(path(b).c_str(), buf, sizeof buf);
        });
        both_expect("setxattr replace", success(), [&](const std::string& b) {
            return ::setxattr(path(b).c_str(), "user.greeting", "bye", 3, XATTR_REPLACE);
        });
        both_expect("getxattr after replace", success(3), [&](const std::string& b) {
            char buf[16];
            return ::getxattr(path(b).c_str(), "user.greeting", buf, sizeof buf);
        });
        both_expect("removexattr", success(), [&](const std::string& b) {
            return ::removexattr(path(b).c_str(), "user.greeting");
        });
        both_expect("removexattr again", failure(ENODATA), [&](const std::string& b) {
            return ::removexattr(path(b).c_str(), "user.greeting");
        });
        both_expect("getxattr after removexattr", failure(ENODATA), [&](const std::string& b) {
            char buf[16];
            return ::getxattr(path(b).c_str(), "user.greeting", buf, sizeof buf);
        });
        both_expect("getxattr of an unknown namespace", failure(EOPNOTSUPP),
                    [&](const std::string& b) {
                        char buf[16];
                        return ::getxattr(path(b).c_str(), "bogus.name", buf, sizeof buf);
                    });
    }
    // Through a descriptor, and on a symlink (user.* is not allowed there).
    Pair p = open_both("f", O_RDONLY);
    both_fd("fsetxattr", p, [](int fd) { return ::fsetxattr(fd, "user.fd", "v", 1, 0); });
    both_fd("fgetxattr", p, [](int fd) {
        char buf[4];
        return ::fgetxattr(fd, "user.fd", buf, sizeof buf);
    });
    both_fd("fremovexattr", p, [](int fd) { return ::fremovexattr(fd, "user.fd"); });
    both_expect("symlink", success(), [](const std::string& b) {
        return ::symlink("f", P(b, "l").c_str());
    });
    both_expect("lsetxattr user.* on a symlink", failure(EPERM), [](const std::string& b) {
        return ::lsetxattr(P(b, "l").c_str(), "user.x", "v", 1, 0);
    });
    both_expect("lgetxattr on a symlink", failure(ENODATA), [](const std::string& b) {
        char buf[4];
        return ::lgetxattr(P(b, "l").c_str(), "user.x", buf, sizeof buf);
    });
    both_expect("setxattr through a symlink", success(), [](const std::string& b) {
        return ::setxattr(P(b, "l").c_str(), "user.via-link", "v", 1, 0);
    });
    both_expect("getxattr of the target", success(1), [](const std::string& b) {
        char buf[4];
        return ::getxattr(P(b, "f").c_str(), "user.via-link", buf, sizeof buf);
    });
    // The backing file carries the attribute.
    char buf[8] = {};
    EXPECT_EQ(::getxattr(backing("f").c_str(), "user.via-link", buf, sizeof buf), 1);
}

// ---- fallocate, copy_file_range, lseek -------------------------------------------------------

TEST_F(MountOps, Fallocate) {
    auto p = open_both("f", O_RDWR | O_CREAT | O_EXCL, 0644);
    ASSERT_TRUE(p.m && p.r);
    struct stat m, r;
    auto same_blocks = [&](const char* what) {
        ASSERT_EQ(::fstat(p.m.get(), &m), 0);
        ASSERT_EQ(::fstat(p.r.get(), &r), 0);
        EXPECT_EQ(stat_differences(m, r), "") << what;
        EXPECT_EQ(m.st_blocks, r.st_blocks) << what << ": allocated blocks differ";
    };
    EXPECT_EQ(both_fd("fallocate 1 MiB", p, [](int fd) { return ::fallocate(fd, 0, 0, 1 << 20); }),
              success());
    same_blocks("after fallocate");
    EXPECT_EQ(m.st_size, 1 << 20);
    EXPECT_EQ(both_fd("fallocate KEEP_SIZE past EOF", p,
                      [](int fd) { return ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20); }),
              success());
    same_blocks("after KEEP_SIZE");
    EXPECT_EQ(m.st_size, 1 << 20) << "KEEP_SIZE changed the size";
    EXPECT_GE(m.st_blocks, 4096) << "KEEP_SIZE allocated nothing";
    const std::string data = random_bytes(1 << 20, 8);
    both_fd("write", p, [&](int fd) { return ::pwrite(fd, data.data(), data.size(), 0); });
    EXPECT_EQ(both_fd("punch a hole", p,
                      [](int fd) {
                          return ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192,
                                             65536);
                      }),
              success());
    EXPECT_EQ(both_fd("punch an unaligned hole", p,
                      [](int fd) {
                          return ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100001,
                                             5000);
                      }),
              success());
    same_blocks("after the punches");
    same_content("f");
    std::string content = read_whole(mnt("f"));
    ASSERT_EQ(content.size(), data.size());
    EXPECT_EQ(content.substr(8192, 65536), std::string(65536, '\0')) << "the hole is not zeros";
    EXPECT_EQ(content.substr(100001, 5000), std::string(5000, '\0'));
    EXPECT_EQ(content.substr(0, 8192), data.substr(0, 8192));
    EXPECT_EQ(content.substr(200000), data.substr(200000));
    EXPECT_EQ(both_fd("PUNCH_HOLE without KEEP_SIZE", p,
                      [](int fd) { return ::fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096); }),
              failure(EOPNOTSUPP));
    both_fd("fallocate with a zero length", p, [](int fd) { return ::fallocate(fd, 0, 0, 0); });
    both_fd("fallocate at a negative offset", p, [](int fd) { return ::fallocate(fd, 0, -1, 10); });
    both_fd("fallocate extends the size", p, [](int fd) { return ::fallocate(fd, 0, 3 << 20, 12345); });
    same_blocks("after extending");
    auto ro = open_both("f", O_RDONLY);
    both_fd("fallocate of a read-only descriptor", ro,
            [](int fd) { return ::fallocate(fd, 0, 0, 4096); });
}

TEST_F(MountOps, CopyFileRangeInsideTheMount) {
    const std::string data = random_bytes(3 << 20, 9);
    make_file("src", data);
    make_file("dst", random_bytes(5000, 10));
    auto in = open_both("src", O_RDONLY);
    auto out = open_both("dst", O_RDWR);
    ASSERT_TRUE(in.m && in.r && out.m && out.r);
    auto copy = [](int fd_in, off_t off_in, int fd_out, off_t off_out, size_t len) {
        loff_t i = off_in, o = off_out;
        return ::copy_file_range(fd_in, &i, fd_out, &o, len, 0);
    };
    Outcome om = capture([&] { return copy(in.m.get(), 4099, out.m.get(), 10, 500000); });
    Outcome orf = capture([&] { return copy(in.r.get(), 4099, out.r.get(), 10, 500000); });
    EXPECT_EQ(om, orf) << "copy_file_range at offsets";
    EXPECT_EQ(om, success(500000));
    same_stat("dst");
    same_content("dst");
    EXPECT_EQ(read_whole(mnt("dst")).substr(10, 500000), data.substr(4099, 500000));
    // With the descriptors' own positions (and their update).
    both_fd("lseek in", in, [](int fd) { return ::lseek(fd, 1 << 20, SEEK_SET); });
    both_fd("lseek out", out, [](int fd) { return ::lseek(fd, 2 << 20, SEEK_SET); });
    om = capture([&] { return ::copy_file_range(in.m.get(), nullptr, out.m.get(), nullptr, 1234567, 0); });
    orf = capture([&] { return ::copy_file_range(in.r.get(), nullptr, out.r.get(), nullptr, 1234567, 0); });
    EXPECT_EQ(om, orf) << "copy_file_range at the descriptors' positions";
    both_fd("position of in", in, [](int fd) { return ::lseek(fd, 0, SEEK_CUR); });
    both_fd("position of out", out, [](int fd) { return ::lseek(fd, 0, SEEK_CUR); });
    same_stat("dst");
    same_content("dst");
    // Past the end of the source: nothing to copy; a short copy at its end.
    om = capture([&] { return copy(in.m.get(), 10 << 20, out.m.get(), 0, 100); });
    orf = capture([&] { return copy(in.r.get(), 10 << 20, out.r.get(), 0, 100); });
    EXPECT_EQ(om, orf);
    EXPECT_EQ(om, success(0));
    om = capture([&] { return copy(in.m.get(), (3 << 20) - 10, out.m.get(), 0, 100); });
    orf = capture([&] { return copy(in.r.get(), (3 << 20) - 10, out.r.get(), 0, 100); });
    EXPECT_EQ(om, orf);
    same_content("dst");
    // Errors: an overlapping range in one file, a read-only destination.
    auto rw = open_both("src", O_RDWR);
    om = capture([&] { return copy(rw.m.get(), 0, rw.m.get(), 100, 1000); });
    orf = capture([&] { return copy(rw.r.get(), 0, rw.r.get(), 100, 1000); });
    EXPECT_EQ(om, orf) << "overlapping copy in one file";
    om = capture([&] { return copy(out.m.get(), 0, in.m.get(), 0, 10); });
    orf = capture([&] { return copy(out.r.get(), 0, in.r.get(), 0, 10); });
    EXPECT_EQ(om, orf) << "copy to a read-only descriptor";
    EXPECT_EQ(om, failure(EBADF));
    // Within one file, not overlapping.
    om = capture([&] { return copy(rw.m.get(), 0, rw.m.get(), 2 << 20, 4096 * 3 + 5); });
    orf = capture([&] { return copy(rw.r.get(), 0, rw.r.get(), 2 << 20, 4096 * 3 + 5); });
    EXPECT_EQ(om, orf) << "copy inside one file";
    same_content("src");
}

TEST_F(MountOps, SeekDataAndHole) {
    auto p = open_both("sparse", O_RDWR | O_CREAT | O_EXCL, 0644);
    ASSERT_TRUE(p.m && p.r);
    const std::string block = random_bytes(8192, 11);
    both_fd("write at 0", p, [&](int fd) { return ::pwrite(fd, block.data(), 4096, 0); });
    both_fd("write at 1 MiB", p, [&](int fd) { return ::pwrite(fd, block.data(), 8192, 1 << 20); });
    both_fd("extend to 4 MiB", p, [](int fd) { return ::ftruncate(fd, 4 << 20); });
    both_fd("fsync", p, [](int fd) { return ::fsync(fd); });
    const std::vector<std::pair<off_t, int>> probes = {
        {0, SEEK_DATA},         {0, SEEK_HOLE},          {4096, SEEK_DATA},
        {4096, SEEK_HOLE},      {100, SEEK_HOLE},        {(1 << 20) - 1, SEEK_DATA},
        {(1 << 20) + 1, SEEK_DATA}, {(1 << 20) + 1, SEEK_HOLE}, {(1 << 20) + 8192, SEEK_DATA},
        {(1 << 20) + 8192, SEEK_HOLE}, {4 << 20, SEEK_DATA}, {4 << 20, SEEK_HOLE},
        {5 << 20, SEEK_HOLE},   {-1, SEEK_DATA}};
    for (const auto& [off, whence] : probes) {
        SCOPED_TRACE(std::to_string(off) + (whence == SEEK_DATA ? " SEEK_DATA" : " SEEK_HOLE"));
        both_fd("lseek", p, [&](int fd) { return ::lseek(fd, off, whence); });
    }
    EXPECT_EQ(capture([&] { return ::lseek(p.m.get(), 0, SEEK_HOLE); }), success(4096));
    EXPECT_EQ(capture([&] { return ::lseek(p.m.get(), 4096, SEEK_DATA); }), success(1 << 20));
    EXPECT_EQ(capture([&] { return ::lseek(p.m.get(), (1 << 20) + 8192, SEEK_DATA); }),
              failure(ENXIO));
    // The position a SEEK_DATA leaves is where the next read starts.
    both_fd("seek to data", p, [](int fd) { return ::lseek(fd, 8192, SEEK_DATA); });
    char bm[16], br[16];
    Outcome om = capture([&] { return ::read(p.m.get(), bm, sizeof bm); });
    Outcome orf = capture([&] { return ::read(p.r.get(), br, sizeof br); });
    EXPECT_EQ(om, orf);
    EXPECT_EQ(std::string(bm, 16), std::string(br, 16));
}

// ---- errors on paths -------------------------------------------------------------------------

TEST_F(MountOps, PathErrors) {
    make_file("file", "x");
    make_dir("dir");
    both_expect("symlink loop", success(), [](const std::string& b) {
        return ::symlink("loop", P(b, "loop").c_str());
    });
    struct stat st;
    both_expect("ENOENT: stat", failure(ENOENT), [&](const std::string& b) {
        return ::stat(P(b, "missing").c_str(), &st);
    });
    both_expect("ENOENT: in a missing directory", failure(ENOENT), [&](const std::string& b) {
        return ::stat(P(b, "missing/x").c_str(), &st);
    });
    both_expect("ENOENT: open", failure(ENOENT), [&](const std::string& b) {
        return opened(::open(P(b, "dir/missing").c_str(), O_RDONLY | O_CLOEXEC));
    });
    both_expect("ENOTDIR: a file as a directory", failure(ENOTDIR), [&](const std::string& b) {
        return ::stat(P(b, "file/x").c_str(), &st);
    });
    both_expect("ENOTDIR: trailing slash on a file", failure(ENOTDIR), [&](const std::string& b) {
        return ::stat(P(b, "file/").c_str(), &st);
    });
    both_expect("ENOTDIR: create under a file", failure(ENOTDIR), [&](const std::string& b) {
        return opened(::open(P(b, "file/new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    });
    both_expect("EISDIR: open a directory for writing", failure(EISDIR), [&](const std::string& b) {
        return opened(::open(P(b, "dir").c_str(), O_WRONLY | O_CLOEXEC));
    });
    both_expect("EISDIR: open a directory read-write", failure(EISDIR), [&](const std::string& b) {
        return opened(::open(P(b, "dir").c_str(), O_RDWR | O_CLOEXEC));
    });
    both_expect("EISDIR: O_CREAT of a directory", failure(EISDIR), [&](const std::string& b) {
        return opened(::open(P(b, "dir").c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644));
    });
    both_expect("ELOOP: a symlink loop", failure(ELOOP), [&](const std::string& b) {
        return ::stat(P(b, "loop").c_str(), &st);
    });
    for (size_t len : {255, 256, 1000, 1025, 3000}) {
        const std::string name(len, 'n');
        SCOPED_TRACE(len);
        both("stat of a long name", [&](const std::string& b) {
            return ::stat(P(b, name).c_str(), &st);
        });
        both("create a long name", [&](const std::string& b) {
            return opened(::open(P(b, name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        });
        both("mkdir a long name", [&](const std::string& b) {
            return ::mkdir(P(b, name + "d").c_str(), 0755);
        });
        both("rename to a long name", [&](const std::string& b) {
            return ::rename(P(b, "file").c_str(), P(b, name).c_str());
        });
        if (len <= 255) {
            same_stat(name);
            both_expect("rename back", success(), [&](const std::string& b) {
                return ::rename(P(b, name).c_str(), P(b, "file").c_str());
            });
        }
    }
    both_expect("ENAMETOOLONG: 256 bytes", failure(ENAMETOOLONG), [&](const std::string& b) {
        return opened(::open(P(b, std::string(256, 'x')).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    });
    std::string long_path;
    while (long_path.size() < 5000)
        long_path += "dir/../";
    both_expect("ENAMETOOLONG: a path longer than PATH_MAX", failure(ENAMETOOLONG),
                [&](const std::string& b) { return ::stat(P(b, long_path + "file").c_str(), &st); });
}

TEST_F(MountOps, ExtendedAttributeLimits) {
    make_file("f", "x");
    const std::string v4000(4000, 'a'), v5000(5000, 'b');
    both("setxattr of a 4000-byte value", [&](const std::string& b) {
        return ::setxattr(P(b, "f").c_str(), "user.v4000", v4000.data(), v4000.size(), 0);
    });
    both("setxattr of a 5000-byte value", [&](const std::string& b) {
        return ::setxattr(P(b, "f").c_str(), "user.v5000", v5000.data(), v5000.size(), 0);
    });
    both("setxattr of a 300-byte name", [&](const std::string& b) {
        return ::setxattr(P(b, "f").c_str(), ("user." + std::string(300, 'n')).c_str(), "v", 1, 0);
    });
    both("setxattr with XATTR_CREATE|XATTR_REPLACE", [&](const std::string& b) {
        return ::setxattr(P(b, "f").c_str(), "user.both", "v", 1, XATTR_CREATE | XATTR_REPLACE);
    });
    both("setxattr of the bare prefix", [&](const std::string& b) {
        return ::setxattr(P(b, "f").c_str(), "user.", "v", 1, 0);
    });
    both("setxattr without a namespace", [&](const std::string& b) {
        return ::setxattr(P(b, "f").c_str(), "noprefix", "v", 1, 0);
    });
    both("getxattr of an empty name", [&](const std::string& b) {
        char buf[8];
        return ::getxattr(P(b, "f").c_str(), "", buf, sizeof buf);
    });
    both("getxattr of the large value", [&](const std::string& b) {
        std::string buf(65536, '\0');
        return ::getxattr(P(b, "f").c_str(), "user.v4000", buf.data(), buf.size());
    });
    // Many names: listxattr grows past one page.
    for (int i = 0; i < 40; ++i) {
        const std::string name = "user.name-number-" + std::to_string(i) + std::string(40, 'x');
        both("setxattr " + name, [&](const std::string& b) {
            return ::setxattr(P(b, "f").c_str(), name.c_str(), "1", 1, 0);
        });
    }
    both("listxattr size", [&](const std::string& b) { return ::listxattr(P(b, "f").c_str(), nullptr, 0); });
    std::string lm(65536, '\0'), lr(65536, '\0');
    Outcome om = capture([&] { return ::listxattr(mnt("f").c_str(), lm.data(), lm.size()); });
    Outcome orf = capture([&] { return ::listxattr(ref("f").c_str(), lr.data(), lr.size()); });
    EXPECT_EQ(om, orf);
}

TEST_F(MountOps, FileSizeLimits) {
    auto p = open_both("big", O_RDWR | O_CREAT | O_EXCL, 0644);
    ASSERT_TRUE(p.m && p.r);
    struct statvfs sv;
    ASSERT_EQ(::statvfs(backing().c_str(), &sv), 0);
    const off_t huge = off_t(1) << 44;  // ext4's limit with 4 KiB blocks
    both_fd("pwrite at 16 TiB", p, [&](int fd) { return ::pwrite(fd, "x", 1, huge); });
    both_fd("pwrite just below 16 TiB", p, [&](int fd) { return ::pwrite(fd, "x", 1, huge - 4096); });
    both_fd("ftruncate past 16 TiB", p, [&](int fd) { return ::ftruncate(fd, huge + 1); });
    both_fd("ftruncate to 1 TiB", p, [&](int fd) { return ::ftruncate(fd, off_t(1) << 40); });
    both_fd("pwrite at 1 TiB", p, [&](int fd) { return ::pwrite(fd, "end", 3, off_t(1) << 40); });
    both_fd("fallocate past 16 TiB", p, [&](int fd) { return ::fallocate(fd, 0, huge, 4096); });
    both_fd("pread at 1 TiB", p, [&](int fd) {
        char buf[8];
        return ::pread(fd, buf, sizeof buf, off_t(1) << 40);
    });
    same_stat("big");
    both_fd("SEEK_DATA in a sparse 1 TiB file", p, [](int fd) { return ::lseek(fd, 0, SEEK_DATA); });
    both_fd("ftruncate back to 0", p, [](int fd) { return ::ftruncate(fd, 0); });
}

TEST_F(MountOps, SharedMmapWithoutDbopt) {
    make_file("f", std::string(3 * 4096, '.'));
    for (const std::string& base : {mnt(), ref()}) {
        SCOPED_TRACE(base);
        Fd fd(::open(P(base, "f").c_str(), O_RDWR | O_CLOEXEC));
        ASSERT_TRUE(fd);
        void* addr = ::mmap(nullptr, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
        ASSERT_NE(addr, MAP_FAILED) << errno_name(errno);
        char* bytes = static_cast<char*>(addr);
        std::memcpy(bytes + 4090, "across a page", 13);
        EXPECT_EQ(::msync(addr, 3 * 4096, MS_SYNC), 0) << errno_name(errno);
        ::munmap(addr, 3 * 4096);
    }
    same_content("f");
    EXPECT_EQ(read_whole(backing("f")).substr(4090, 13), "across a page");
}

// What the mount shows right after each change is what the backing file says, times included.
TEST_F(MountOps, AttributesFollowTheBackingFileAfterChanges) {
    auto same_as_backing = [&](const std::string& rel, const char* after) {
        struct stat m{}, b{};
        ASSERT_EQ(::lstat(mnt(rel).c_str(), &m), 0) << rel;
        ASSERT_EQ(::lstat(backing(rel).c_str(), &b), 0) << rel;
        EXPECT_EQ(stat_differences(m, b, /*times=*/true), "") << rel << " after " << after;
        EXPECT_EQ(m.st_ctim.tv_sec, b.st_ctim.tv_sec) << rel << " ctime after " << after;
        EXPECT_EQ(m.st_ctim.tv_nsec, b.st_ctim.tv_nsec) << rel << " ctime after " << after;
        EXPECT_EQ(m.st_ino, b.st_ino);
        EXPECT_EQ(m.st_blocks, b.st_blocks) << rel << " blocks after " << after;
    };
    ASSERT_EQ(::mkdir(mnt("d").c_str(), 0755), 0);
    same_as_backing("d", "mkdir");
    ASSERT_EQ(write_whole(mnt("d/f"), "hello"), 0);
    same_as_backing("d", "create in it");
    same_as_backing("d/f", "create");
    {
        Fd fd(::open(mnt("d/f").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
        ASSERT_EQ(::write(fd.get(), " world", 6), 6);
        same_as_backing("d/f", "write (descriptor still open)");
    }
    same_as_backing("d/f", "close");
    ASSERT_EQ(::chmod(mnt("d/f").c_str(), 0600), 0);
    same_as_backing("d/f", "chmod");
    ASSERT_EQ(::truncate(mnt("d/f").c_str(), 3), 0);
    same_as_backing("d/f", "truncate");
    ASSERT_EQ(::link(mnt("d/f").c_str(), mnt("d/g").c_str()), 0);
    same_as_backing("d/f", "link");
    same_as_backing("d", "link in it");
    ASSERT_EQ(::rename(mnt("d/g").c_str(), mnt("h").c_str()), 0);
    same_as_backing("d", "rename out of it");
    same_as_backing(".", "rename into it");
    ASSERT_EQ(::unlink(mnt("h").c_str()), 0);
    same_as_backing("d/f", "unlink of another link");
    const timespec times[2] = {{1234567890, 1}, {1234567890, 2}};
    ASSERT_EQ(::utimensat(AT_FDCWD, mnt("d/f").c_str(), times, 0), 0);
    same_as_backing("d/f", "utimensat");
    ASSERT_EQ(::setxattr(mnt("d/f").c_str(), "user.x", "1", 1, 0), 0);
    same_as_backing("d/f", "setxattr");
}

}  // namespace
}  // namespace diofs_test

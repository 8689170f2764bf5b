// What an attacker or an unlucky operator could do to a mount, each as a reproduction:
// - a user who may write a setuid or setgid file (not theirs) writes it: the bits are gone
//   before the write returns, as the backing filesystem itself would clear them for that user,
//   and the kernel sees it at once (fstat right after the write, stat from another process
//   while the file is still open, and an exec of the file);
// - after a coalesced write, fstat shows the time of the write, not the old one;
// - the daemon runs out of descriptors: opens fail with EMFILE, closes never do, and no file is
//   silently served buffered because its O_DIRECT reopen failed.
// Each runs on a plain mount (the control: the kernel's own write path clears the bits) and
// under dbopt, strict and coalescing.

#include "dbopt_support.hpp"

#include <grp.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

namespace diofs_test {
namespace {

// What `program -u` (id(1)) prints when run as uid/gid 65534: its effective uid.
std::string effective_uid_of(const std::string& program) {
    int out[2];
    if (::pipe(out) != 0)
        return "<pipe: " + errno_name(errno) + ">";
    pid_t pid = ::fork();
    if (pid < 0)
        return "<fork: " + errno_name(errno) + ">";
    if (pid == 0) {
        ::dup2(out[1], 1);
        ::close(out[0]);
        ::close(out[1]);
        if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0)
            ::_exit(100);
        const char* argv[] = {program.c_str(), "-u", nullptr};
        ::execv(argv[0], const_cast<char* const*>(argv));
        ::_exit(101);
    }
    ::close(out[1]);
    std::string text;
    char buf[64];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0)
        text.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return "<the program failed: status " + std::to_string(status) + ">";
    return text;
}

std::string mode_of(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0)
        return "<stat: " + errno_name(errno) + ">";
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04o", st.st_mode & 07777);
    return buf;
}

// Creates `path` as root with exactly `mode` (umask 0 for the call).
void create_with_mode(const std::string& path, mode_t mode) {
    const mode_t old = ::umask(0);
    Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    ::umask(old);
    ASSERT_TRUE(fd) << path << ": " << errno_name(errno);
    ASSERT_EQ(::fchmod(fd.get(), mode), 0);  // the kernel's create clears nothing for root
}

struct Mode {
    const char* name;
    std::vector<std::string> options;
};
void PrintTo(const Mode& m, std::ostream* os) { *os << m.name; }

class Hardening : public DbOptTest, public ::testing::WithParamInterface<Mode> {};

// pjdfstest chmod/12.t, and more: a non-owner's write of 1 byte, of an aligned 4 KiB block and
// of 1 MiB clears setuid, setgid (group-executable) and both; fstat right after the write, and
// stat by another process while the writer still holds the file open (before any close could
// write held bytes out), show the cleared mode; so does the backing file. A setgid bit without
// group execute (mandatory locking) stays, as on the backing filesystem; a root writer keeps
// the bits (CAP_FSETID).
TEST_P(Hardening, ANonOwnersWriteClearsSetuidAndSetgidBeforeItReturns) {
    DIOFS_MOUNT_ON(Backing::plain, GetParam().options);
    struct Case {
        mode_t mode;
        size_t size;
    };
    const Case cases[] = {{04777, 1}, {02777, 1}, {06777, 1}, {04777, 4096}, {06777, 1 << 20},
                          {02767, 1}, {04777, 100000}};
    int n = 0;
    for (const Case& c : cases) {
        const std::string name = "f" + std::to_string(n++);
        SCOPED_TRACE(name + ": mode " + std::to_string(c.mode) + " (decimal), write of " +
                     std::to_string(c.size) + " bytes");
        ASSERT_NO_FATAL_FAILURE(create_with_mode(mnt(name), c.mode));
        ASSERT_NO_FATAL_FAILURE(create_with_mode(ref(name), c.mode));
        // The reference: the same write on the backing filesystem directly.
        const std::string data(c.size, 'x');
        ASSERT_EQ(as_nobody([&] {
                      int fd = ::open(ref(name).c_str(), O_WRONLY);
                      return fd >= 0 && ::write(fd, data.data(), data.size()) ==
                                            static_cast<ssize_t>(data.size())
                                 ? 0
                                 : 1;
                  }),
                  0);
        const std::string want = mode_of(ref(name));
        // Through the mount, the writer keeps the file open until the parent looked.
        int to_parent[2], to_child[2];
        ASSERT_EQ(::pipe(to_parent), 0);
        ASSERT_EQ(::pipe(to_child), 0);
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(to_parent[0]);
            ::close(to_child[1]);
            if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0)
                ::_exit(100);
            int fd = ::open(mnt(name).c_str(), O_WRONLY);
            if (fd < 0)
                ::_exit(101);
            if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
                ::_exit(102);
            struct stat st{};
            if (::fstat(fd, &st) != 0)
                ::_exit(103);
            const mode_t seen = st.st_mode & 07777;
            ssize_t ignored = ::write(to_parent[1], &seen, sizeof seen);
            char go;
            ignored = ::read(to_child[0], &go, 1);
            (void)ignored;
            ::_exit(::close(fd) == 0 ? 0 : 104);
        }
        ::close(to_parent[1]);
        ::close(to_child[0]);
        mode_t seen = 0;
        const bool got = ::read(to_parent[0], &seen, sizeof seen) == sizeof seen;
        char buf[16];
        std::snprintf(buf, sizeof buf, "%04o", seen);
        if (got) {
            EXPECT_EQ(buf, want) << "fstat by the writer right after its write";
            EXPECT_EQ(mode_of(mnt(name)), want) << "stat through the mount while the file is open";
            EXPECT_EQ(mode_of(backing(name)), want) << "the backing file while the file is open";
        }
        ASSERT_EQ(::write(to_child[1], "g", 1), 1);
        ::close(to_parent[0]);
        ::close(to_child[1]);
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(got) << "the writer did not get as far as its fstat";
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
            << "the writer failed (status " << status << ")";
        EXPECT_EQ(mode_of(mnt(name)), want) << "stat through the mount after close";
        EXPECT_EQ(mode_of(backing(name)), want) << "the backing file after close";
    }
    // Root keeps the bits (CAP_FSETID), as on the backing filesystem.
    ASSERT_NO_FATAL_FAILURE(create_with_mode(mnt("root"), 06777));
    ASSERT_EQ(write_whole(mnt("root"), "root writes"), 0);
    EXPECT_EQ(mode_of(mnt("root")), "6777");
}

// The attack: a world-writable setuid-root program on a mount with -o suid. A user writes a
// program of their own into it and runs it at once: it must not run as root. (A copy of id(1)
// stands for both programs: rewriting its first bytes with the same bytes is the user's
// write; what matters is the effective uid it reports.)
TEST_P(Hardening, AProgramJustWrittenByANonOwnerDoesNotRunSetuid) {
    std::vector<std::string> options = GetParam().options;
    options.emplace_back("suid");
    DIOFS_MOUNT_ON(Backing::plain, options);
    const std::string program = read_whole("/usr/bin/id");
    ASSERT_GT(program.size(), 4096u);
    ASSERT_EQ(write_whole(mnt("prog"), program), 0);
    ASSERT_EQ(::chmod(mnt("prog").c_str(), 04777), 0);
    // First, as it is: the mount honours setuid, so the test can tell.
    std::string out = effective_uid_of(mnt("prog"));
    ASSERT_EQ(out, "0\n") << "the unmodified setuid program does not run as root: the test "
                             "cannot tell anything";
    const int rc = as_nobody([&] {
        int fd = ::open(mnt("prog").c_str(), O_WRONLY);
        if (fd < 0 || ::pwrite(fd, program.data(), 4096, 0) != 4096)
            return 1;
        return ::close(fd) == 0 ? 0 : 2;
    });
    ASSERT_EQ(rc, 0);
    out = effective_uid_of(mnt("prog"));
    EXPECT_EQ(out, "65534\n") << "the program written by uid 65534 ran as uid " << out;
    EXPECT_EQ(mode_of(mnt("prog")), "0777");
}

// Under coalescing, the bytes of a write wait in the daemon; the file was still modified when
// the write was made, and fstat says so at once.
TEST_P(Hardening, FstatAfterAWriteShowsTheTimeOfTheWrite) {
    DIOFS_MOUNT_ON(Backing::plain, GetParam().options);
    ASSERT_EQ(write_whole(mnt("f"), "old"), 0);
    const timespec long_ago[2] = {{946684800, 0}, {946684800, 0}};  // 2000-01-01
    ASSERT_EQ(::utimensat(AT_FDCWD, mnt("f").c_str(), long_ago, 0), 0);
    Fd fd(::open(mnt("f").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(fd);
    timespec before{};
    ::clock_gettime(CLOCK_REALTIME_COARSE, &before);
    ASSERT_EQ(::write(fd.get(), "new bytes", 9), 9);
    struct stat st{};
    ASSERT_EQ(::fstat(fd.get(), &st), 0);
    EXPECT_GE(st.st_mtim.tv_sec, before.tv_sec) << "fstat right after a write shows the old mtime";
    EXPECT_GE(st.st_ctim.tv_sec, before.tv_sec) << "fstat right after a write shows the old ctime";
    EXPECT_EQ(st.st_size, 12);
    ASSERT_EQ(::stat(mnt("f").c_str(), &st), 0);
    EXPECT_GE(st.st_mtim.tv_sec, before.tv_sec) << "stat right after a write shows the old mtime";
    EXPECT_EQ(fd.close(), success());
    ASSERT_EQ(::stat(mnt("f").c_str(), &st), 0);
    EXPECT_GE(st.st_mtim.tv_sec, before.tv_sec) << "after close";
    EXPECT_EQ(read_whole(mnt("f")), "oldnew bytes");
}

// Where the blocks of `path` end: the end of its last extent (FIEMAP), 0 without any, or
// nothing when the filesystem cannot say.
std::optional<uint64_t> allocated_end(const std::string& path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd)
        return std::nullopt;
    constexpr unsigned kExtents = 512;
    std::vector<char> buf(sizeof(fiemap) + kExtents * sizeof(fiemap_extent));
    auto* map = reinterpret_cast<fiemap*>(buf.data());
    map->fm_start = 0;
    map->fm_length = FIEMAP_MAX_OFFSET;
    map->fm_flags = FIEMAP_FLAG_SYNC;
    map->fm_extent_count = kExtents;
    if (::ioctl(fd.get(), FS_IOC_FIEMAP, map) != 0)
        return std::nullopt;
    uint64_t end = 0;
    for (unsigned i = 0; i < map->fm_mapped_extents; ++i)
        end = std::max<uint64_t>(end, map->fm_extents[i].fe_logical + map->fm_extents[i].fe_length);
    return end;
}

// Room reserved ahead of a stream of writes and not written is given back when the file is
// closed: no block of the backing file lies past its last one (st_blocks would not say: it
// also counts the blocks of the extent tree, which differ with the layout), and the giving
// back leaves the modification time of the last write (the writes were on the backing file,
// fsync'ed, well before the close).
TEST_P(Hardening, NoRoomStaysReservedAfterClose) {
    DIOFS_MOUNT_ON(Backing::plain, GetParam().options);
    const std::string data = random_bytes_from<std::mt19937_64>(25 * 4000, 29);
    Fd fd(::open(mnt("f").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    for (size_t at = 0; at < data.size(); at += 4000)
        ASSERT_EQ(::write(fd.get(), data.data() + at, 4000), 4000);
    ASSERT_EQ(::fsync(fd.get()), 0);
    struct stat before{};
    ASSERT_EQ(::stat(backing("f").c_str(), &before), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    ASSERT_EQ(fd.close(), success());
    struct stat after{};
    ASSERT_EQ(::stat(backing("f").c_str(), &after), 0);
    EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec) << "the close changed the mtime";
    EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec) << "the close changed the mtime";
    EXPECT_EQ(after.st_size, static_cast<off_t>(data.size()));
    const std::optional<uint64_t> end = allocated_end(backing("f"));
    ASSERT_TRUE(end.has_value()) << "FIEMAP: " << errno_name(errno);
    EXPECT_LE(*end, (data.size() + after.st_blksize - 1) / after.st_blksize * after.st_blksize)
        << "blocks reserved past the end of the file stayed allocated";
    EXPECT_EQ(read_whole(backing("f")), data);
}

// The daemon's descriptor limit is made small once it runs (prlimit), after it said at start
// what its limit is (raised to the hard one). Files are opened and kept open through the mount
// until an open fails: it fails with EMFILE; every file that did open is a real direct-I/O
// file under dbopt (no warning that the filesystem refuses direct I/O), can be written and
// read, and closes without an error, the first close coming while the daemon is still at its
// limit. Afterwards opens work again.
TEST_P(Hardening, RunningOutOfDescriptorsFailsAnOpenNeverAClose) {
    DIOFS_MOUNT_ON(Backing::plain, GetParam().options);
    EXPECT_NE(wait_for_log(mount(), "descriptor limit").find("descriptor limit"), std::string::npos)
        << "the daemon does not say its descriptor limit";
    const rlimit small{64, 64};
    ASSERT_EQ(::prlimit(mount().pid(), RLIMIT_NOFILE, &small, nullptr), 0) << errno_name(errno);
    for (int i = 0; i < 200; ++i)
        ASSERT_EQ(write_whole(backing("f" + std::to_string(i)), std::string(10000, 'a' + i % 26)), 0);
    std::vector<Fd> open;
    Outcome refused;
    for (int i = 0; i < 200; ++i) {
        Fd fd(::open(mnt("f" + std::to_string(i)).c_str(), O_RDWR | O_CLOEXEC));
        if (!fd) {
            refused = failure(errno);
            break;
        }
        open.push_back(std::move(fd));
    }
    EXPECT_EQ(refused, failure(EMFILE)) << "after " << open.size() << " open files";
    ASSERT_GT(open.size(), 5u) << "the daemon could open hardly anything";
    EXPECT_EQ(mount().log().find("refuses direct I/O"), std::string::npos)
        << "a file was served buffered because the daemon had no descriptor left:\n"
        << mount().log_tail(10);
    // Each file that opened works, and closes without an error, the first one at the limit.
    const std::string block(4096, 'z');
    for (size_t i = 0; i < open.size(); ++i) {
        SCOPED_TRACE("file f" + std::to_string(i));
        EXPECT_EQ(capture([&] { return ::pwrite(open[i].get(), block.data(), block.size(), 8192); }),
                  success(4096));
        char buf[16] = {};
        EXPECT_EQ(capture([&] { return ::pread(open[i].get(), buf, 4, 8192); }), success(4));
        EXPECT_EQ(std::string(buf, 4), "zzzz");
    }
    for (size_t i = open.size(); i-- > 0;)
        EXPECT_EQ(open[i].close(), success()) << "close of f" << i << " (a close at the limit)";
    Fd again(::open(mnt("f199").c_str(), O_RDWR | O_CLOEXEC));
    EXPECT_TRUE(again) << "an open after the closes: " << errno_name(errno);
}

INSTANTIATE_TEST_SUITE_P(Modes, Hardening,
                         ::testing::Values(Mode{"Plain", {}}, Mode{"DbOptStrict", {"dbopt", "strict"}},
                                           Mode{"DbOpt", {"dbopt"}},
                                           Mode{"DbOptCoalescing", {"dbopt", "writeback=0"}}),
                         [](const ::testing::TestParamInfo<Mode>& p) { return p.param.name; });

}  // namespace
}  // namespace diofs_test

// What the daemon holds of the inodes the kernel remembers (issue 18, items 6 and 7):
// - one unprivileged user stats 30,000 files through a mount whose daemon may open 2,000
//   descriptors: every stat succeeds, root can still create, open and read files, and the
//   daemon's open descriptors stay far below its limit (an inode the kernel merely remembers
//   costs memory, not a descriptor); on a ramfs, which gives no file handles, the daemon warns
//   when the descriptors it holds for inodes near its limit;
// - an inode whose descriptor the daemon let go still works: through a hard link, after a
//   rename behind the mount's back, and while a file unlinked through the mount is open; one
//   deleted behind the mount's back fails with ESTALE or ENOENT;
// - space comes back at once: on a full ext4 disk, each file removed through the mount (unlink
//   or a rename over it) frees its blocks before the removal returns, so statfs shows them
//   free and the very next write succeeds, 40 times in a row; the same steps on the backing
//   filesystem directly are the control.

#include "dbopt_support.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <sys/statvfs.h>


namespace diofs_test {
namespace {

// How many descriptors process `pid` has open, or -1.
long open_descriptors(pid_t pid) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* d = ::opendir(dir.c_str());
    if (!d)
        return -1;
    long n = 0;
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.')
            ++n;
    ::closedir(d);
    return n;
}

// The descriptor limit of this process, set for as long as it lives (and so inherited by the
// daemon a DiofsMount starts meanwhile, as `prlimit --nofile=N:N diofs ...` would: the daemon
// raises its soft limit to the hard one at start, so both are set).
class DescriptorLimit {
public:
    explicit DescriptorLimit(rlim_t n) {
        ok_ = ::getrlimit(RLIMIT_NOFILE, &saved_) == 0;
        rlimit small{n, n};
        ok_ = ok_ && ::setrlimit(RLIMIT_NOFILE, &small) == 0;
    }
    ~DescriptorLimit() {
        // Raising the hard limit again takes CAP_SYS_RESOURCE, which root may lack (a
        // container, this VM): then the test keeps the small limit, which it never comes near
        // (ctest runs each test in a process of its own).
        if (ok_)
            ::setrlimit(RLIMIT_NOFILE, &saved_);
    }
    bool ok() const { return ok_; }

private:
    rlimit saved_{};
    bool ok_ = false;
};

constexpr rlim_t kDaemonLimit = 2000;
constexpr int kFiles = 30000;

class InodeDescriptors : public DbOptTest {
protected:
    // A mount over `backing` whose daemon may open kDaemonLimit descriptors, and attributes
    // asked for at every stat (so each stat reaches the daemon).
    void mount_with_small_limit(Backing backing = Backing::plain) {
        DescriptorLimit limit(kDaemonLimit);
        ASSERT_TRUE(limit.ok()) << "cannot set RLIMIT_NOFILE: " << errno_name(errno);
        ASSERT_NO_FATAL_FAILURE(mount_on(backing, {"attr_timeout=0"}));
    }

    // `n` empty files many/0 ... many/<n-1> made in the backing directory.
    void make_files(int n) {
        ASSERT_EQ(::mkdir(backing("many").c_str(), 0755), 0) << errno_name(errno);
        for (int i = 0; i < n; ++i) {
            const std::string p = backing("many/" + std::to_string(i));
            int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            ASSERT_GE(fd, 0) << p << ": " << errno_name(errno);
            ::close(fd);
        }
    }

    // Stats many/<from> ... many/<to-1> through the mount as uid 65534: how many failed (at
    // most 99 counted), or -1 when the child could not run.
    int stat_as_nobody(int from, int to) {
        const std::string dir = mnt("many/");
        return as_nobody([&] {
            int failed = 0;
            for (int i = from; i < to; ++i) {
                struct stat st;
                if (::stat((dir + std::to_string(i)).c_str(), &st) != 0)
                    failed = std::min(failed + 1, 99);
            }
            return failed;
        });
    }
};

TEST_F(InodeDescriptors, ThirtyThousandInodesDoNotExhaustTheDaemon) {
    ASSERT_NO_FATAL_FAILURE(mount_with_small_limit());
    if (IsSkipped())
        return;
    ASSERT_NO_FATAL_FAILURE(make_files(kFiles));
    const long before = open_descriptors(mount().pid());
    ASSERT_GT(before, 0) << "cannot count the daemon's descriptors";

    // The kernel keeps each inode it looked up for as long as it likes (no memory pressure
    // here): 30,000 lookups, 30,000 inodes it remembers.
    EXPECT_EQ(stat_as_nobody(0, kFiles), 0) << "stats that failed as uid 65534 (at most 99 "
                                               "counted):\n"
                                            << mount().log_tail(10);
    const long after = open_descriptors(mount().pid());
    std::cout << "[ diofs    ] daemon descriptors: " << before << " before, " << after
              << " after 30,000 stats (limit " << kDaemonLimit << ")" << std::endl;
    EXPECT_LT(after, static_cast<long>(kDaemonLimit / 2))
        << "the daemon holds a descriptor for each inode the kernel remembers";

    // Root's own work still goes through.
    EXPECT_EQ(write_whole(mnt("root-file"), "written by root\n"), 0) << errno_name(errno);
    std::string content;
    EXPECT_TRUE(read_whole(mnt("root-file"), &content)) << errno_name(errno);
    EXPECT_EQ(content, "written by root\n");
    Fd dir(::open(mnt("many").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    EXPECT_TRUE(dir) << "opendir: " << errno_name(errno);
    struct stat st;
    EXPECT_EQ(::stat(mnt("many/12345").c_str(), &st), 0) << errno_name(errno);
    EXPECT_LT(open_descriptors(mount().pid()), static_cast<long>(kDaemonLimit / 2));
}

// A ramfs gives no file handles: each inode the kernel remembers holds a descriptor, and the
// daemon says so once they near its limit (80 %), before lookups fail.
TEST_F(InodeDescriptors, WithoutFileHandlesTheDaemonWarnsNearItsLimit) {
    ASSERT_NO_FATAL_FAILURE(mount_with_small_limit(Backing::ramfs));
    if (IsSkipped())
        return;
    constexpr int kNear = static_cast<int>(kDaemonLimit) * 17 / 20;  // 85 %
    ASSERT_NO_FATAL_FAILURE(make_files(kNear));
    EXPECT_EQ(mount().log().find("descriptors held for inodes"), std::string::npos);
    // As root: on a ramfs backing an unprivileged stat through the mount fails with
    // EOPNOTSUPP, before this change too (a problem of its own).
    int failed = 0;
    for (int i = 0; i < kNear; ++i) {
        struct stat st;
        failed += ::stat(mnt("many/" + std::to_string(i)).c_str(), &st) != 0;
    }
    EXPECT_EQ(failed, 0) << mount().log_tail(10);
    EXPECT_NE(mount().log().find("descriptors held for inodes the kernel remembers"),
              std::string::npos)
        << "no warning with " << open_descriptors(mount().pid()) << " descriptors open:\n"
        << mount().log_tail(10);
    EXPECT_EQ(write_whole(mnt("root-file"), "written by root\n"), 0) << errno_name(errno);
}

// Each inode below has its descriptor let go by the time it is used again: the 2,000-descriptor
// daemon caches at most a quarter of its limit, and 1,000 other stats come between.
TEST_F(InodeDescriptors, InodesWorkAfterTheirDescriptorsAreLetGo) {
    ASSERT_NO_FATAL_FAILURE(mount_with_small_limit());
    if (IsSkipped())
        return;
    constexpr int kOthers = 1000;
    ASSERT_NO_FATAL_FAILURE(make_files(kOthers));
    auto evict = [&] { ASSERT_EQ(stat_as_nobody(0, kOthers), 0); };

    // Hard links: two names, one inode.
    ASSERT_EQ(write_whole(mnt("a"), "linked\n"), 0) << errno_name(errno);
    ASSERT_EQ(::link(mnt("a").c_str(), mnt("b").c_str()), 0) << errno_name(errno);
    // Renamed behind the mount's back, reached through a descriptor the kernel already has
    // (O_PATH: no open request, only the inode).
    ASSERT_EQ(write_whole(mnt("moving"), "moved\n"), 0) << errno_name(errno);
    Fd moving(::open(mnt("moving").c_str(), O_PATH | O_CLOEXEC));
    ASSERT_TRUE(moving) << errno_name(errno);
    // Deleted behind the mount's back.
    ASSERT_EQ(write_whole(mnt("doomed"), "gone\n"), 0) << errno_name(errno);
    Fd doomed(::open(mnt("doomed").c_str(), O_PATH | O_CLOEXEC));
    ASSERT_TRUE(doomed) << errno_name(errno);
    // Unlinked through the mount while open.
    Fd open_file(::open(mnt("open").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(open_file) << errno_name(errno);
    ASSERT_EQ(::write(open_file.get(), "kept\n", 5), 5);
    struct stat a0, moving0;
    ASSERT_EQ(::stat(mnt("a").c_str(), &a0), 0);
    ASSERT_EQ(::fstat(moving.get(), &moving0), 0);

    ASSERT_EQ(::rename(backing("moving").c_str(), backing("moved").c_str()), 0);
    ASSERT_EQ(::unlink(backing("doomed").c_str()), 0);
    ASSERT_EQ(::unlink(mnt("open").c_str()), 0) << errno_name(errno);
    ASSERT_NO_FATAL_FAILURE(evict());

    struct stat st;
    ASSERT_EQ(::stat(mnt("b").c_str(), &st), 0) << errno_name(errno);
    EXPECT_EQ(st.st_ino, a0.st_ino) << "a hard link is the same inode";
    EXPECT_EQ(st.st_nlink, 2u);
    ASSERT_EQ(::fstat(moving.get(), &st), 0) << "renamed behind the mount: " << errno_name(errno);
    EXPECT_EQ(st.st_ino, moving0.st_ino);
    EXPECT_EQ(st.st_size, 6);
    EXPECT_EQ(::chmod(mnt("moved").c_str(), 0600), 0) << errno_name(errno);
    const Outcome gone = capture([&] { return ::fstat(doomed.get(), &st); });
    EXPECT_TRUE(gone == failure(ESTALE) || gone == failure(ENOENT))
        << "fstat of an inode deleted behind the mount: " << gone;
    ASSERT_EQ(::fstat(open_file.get(), &st), 0) << "unlinked while open: " << errno_name(errno);
    EXPECT_EQ(st.st_nlink, 0u);
    EXPECT_EQ(st.st_size, 5);
    char buf[8] = {};
    EXPECT_EQ(::pread(open_file.get(), buf, sizeof buf, 0), 5) << errno_name(errno);
    EXPECT_EQ(std::string(buf, 5), "kept\n");
    EXPECT_EQ(::pwrite(open_file.get(), "more", 4, 5), 4) << errno_name(errno);
}

// --- Space comes back at once -------------------------------------------------------------------

constexpr size_t kFileBytes = 1 << 20;
constexpr int kRounds = 40;

// Fills `dir` with files fill-0, fill-1... of kFileBytes each until a write fails with ENOSPC.
// Returns how many were written whole (the last, partial one stays), or -1 after another error
// (errno set).
int fill_disk(const std::string& dir) {
    const std::string block(kFileBytes, 'x');
    for (int i = 0;; ++i) {
        if (write_whole(dir + "/fill-" + std::to_string(i), block) != 0)
            return errno == ENOSPC ? i : -1;
    }
}

uint64_t free_bytes(const std::string& path) {
    struct statvfs st;
    if (::statvfs(path.c_str(), &st) != 0)
        return 0;
    return static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
}

enum class Removal { unlink, rename_over };

void PrintTo(Removal r, std::ostream* os) { *os << (r == Removal::unlink ? "unlink" : "rename over"); }

// On a full disk in `dir`: kRounds times, remove one of
// the files written before, then write as much into a new file at once. Adds a failure
// for each round where the space was not free, or the write failed.
void remove_and_write_at_once(const std::string& dir, Removal removal) {
    // The files renamed over the victims are made first: a full disk has no block for them.
    for (int i = 0; removal == Removal::rename_over && i < kRounds; ++i)
        ASSERT_EQ(write_whole(dir + "/small-" + std::to_string(i), "s"), 0) << errno_name(errno);
    const int whole = fill_disk(dir);
    ASSERT_GE(whole, kRounds + 1) << "filling " << dir << ": " << errno_name(errno);
    const std::string again(kFileBytes, 'y');
    int not_freed = 0, refused = 0, first_refusal = 0;
    for (int i = 0; i < kRounds; ++i) {
        const std::string victim = dir + "/fill-" + std::to_string(i);
        const uint64_t before = free_bytes(dir);
        if (removal == Removal::unlink) {
            ASSERT_EQ(::unlink(victim.c_str()), 0) << victim << ": " << errno_name(errno);
        } else {
            // A small file renamed over the victim: the victim's last name goes.
            const std::string small = dir + "/small-" + std::to_string(i);
            ASSERT_EQ(::rename(small.c_str(), victim.c_str()), 0) << errno_name(errno);
        }
        if (free_bytes(dir) < before + kFileBytes)
            ++not_freed;
        if (write_whole(dir + "/again-" + std::to_string(i), again) != 0 && refused++ == 0)
            first_refusal = errno;
    }
    EXPECT_EQ(not_freed, 0) << "removals after which statfs did not show the space free, of "
                            << kRounds;
    EXPECT_EQ(refused, 0) << "writes right after a removal that failed, of " << kRounds
                          << " (the first with " << errno_name(first_refusal) << ")";
}

class SpaceComesBack : public DbOptTest, public ::testing::WithParamInterface<Removal> {
protected:
    // diofs over backing/ on a fresh, small ext4; ref/ beside it for the control.
    void mount_on_small_ext4(std::vector<std::string> options) {
        DIOFS_REQUIRE_FUSE();
        ::umask(022);
        mount_ = std::make_unique<DiofsMount>(options);
        ASSERT_NO_FATAL_FAILURE(make_loop("ext4", 96ull << 20));
        if (IsSkipped())
            return;
        const std::string b = loop_->path("backing");
        ASSERT_EQ(::mkdir(b.c_str(), 0755), 0) << b << ": " << errno_name(errno);
        mount_->use_directories(b);
        ASSERT_EQ(mount_->start(), "") << "could not mount diofs over a small ext4";
    }
};

TEST_P(SpaceComesBack, OnTheBackingFilesystemDirectly) {
    DIOFS_REQUIRE_FUSE();
    ASSERT_NO_FATAL_FAILURE(make_loop("ext4", 96ull << 20));
    if (IsSkipped())
        return;
    const std::string dir = loop_->path("direct");
    ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0) << errno_name(errno);
    remove_and_write_at_once(dir, GetParam());
}

TEST_P(SpaceComesBack, ThroughThePlainMount) {
    ASSERT_NO_FATAL_FAILURE(mount_on_small_ext4({}));
    if (IsSkipped())
        return;
    remove_and_write_at_once(mnt(), GetParam());
}

TEST_P(SpaceComesBack, ThroughTheDbOptMount) {
    ASSERT_NO_FATAL_FAILURE(mount_on_small_ext4({"dbopt"}));
    if (IsSkipped())
        return;
    remove_and_write_at_once(mnt(), GetParam());
}

INSTANTIATE_TEST_SUITE_P(Removals, SpaceComesBack,
                         ::testing::Values(Removal::unlink, Removal::rename_over),
                         [](const ::testing::TestParamInfo<Removal>& p) {
                             return std::string(p.param == Removal::unlink ? "Unlink"
                                                                           : "RenameOver");
                         });

}  // namespace
}  // namespace diofs_test

// Small promises of dbopt, one at a time: st_blksize, the dio_align option (bad values refused
// at startup, a good one used, one below the device's requirement raised to it), the alignment named in the log (512 on the machine's disk, 4096
// on a 4096-byte-sector loop device), a writer of one byte at a time, O_APPEND writers (one
// after another, and at once), mmap (MAP_SHARED refused with ENODEV
// on libfuse 3.14, working from 3.16 on; MAP_PRIVATE works), a
// program run from the mount, fsync/fdatasync, and O_SYNC, O_DSYNC and O_DIRECT opens.

#include "dbopt_support.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

namespace diofs_test {
namespace {

std::string random_bytes(size_t n, uint64_t seed) {
    return random_bytes_from<std::mt19937_64>(n, seed);
}

// The logical sector size of the block device holding `path`, from sysfs, or 0.
unsigned logical_sector_size(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0)
        return 0;
    const std::string dev = std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
    for (const char* rel : {"/queue/logical_block_size", "/../queue/logical_block_size"}) {
        std::ifstream in("/sys/dev/block/" + dev + rel);
        unsigned size = 0;
        if (in >> size && size > 0)
            return size;
    }
    return 0;
}

// Unaligned pwrites at random through the mount and on the reference, then the contents of
// both (through the mount and in the backing file) compared.
void unaligned_writes_match(const std::string& mnt_file, const std::string& ref_file,
                            const std::string& backing_file, uint64_t seed, int writes) {
    std::mt19937_64 rng(seed);
    const std::string pool = random_bytes(300000, seed);
    Fd m(::open(mnt_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    Fd r(::open(ref_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(m && r) << errno_name(errno);
    for (int i = 0; i < writes; ++i) {
        const size_t len = std::uniform_int_distribution<size_t>(1, i % 10 == 0 ? 200000 : 6000)(rng);
        const off_t off = std::uniform_int_distribution<off_t>(0, 3 << 20)(rng);
        const char* src = pool.data() + std::uniform_int_distribution<size_t>(0, 99999)(rng);
        ASSERT_EQ(::pwrite(m.get(), src, len, off), static_cast<ssize_t>(len))
            << "pwrite at " << off << " length " << len << ": " << errno_name(errno);
        ASSERT_EQ(::pwrite(r.get(), src, len, off), static_cast<ssize_t>(len));
        if (i % 50 == 49) {
            const off_t to = std::uniform_int_distribution<off_t>(0, 3 << 20)(rng);
            ASSERT_EQ(::ftruncate(m.get(), to), 0) << errno_name(errno);
            ASSERT_EQ(::ftruncate(r.get(), to), 0);
        }
    }
    EXPECT_EQ(m.close(), success());
    const std::string want = read_whole(ref_file);
    EXPECT_EQ(first_difference(read_whole(mnt_file), want), "") << "through the mount";
    EXPECT_EQ(first_difference(read_whole(backing_file), want), "") << "the backing file";
}

class DbOptSemantics : public DbOptTest {};

TEST_F(DbOptSemantics, StBlksizeIsOneMiBForRegularFiles) {
    DIOFS_MOUNT_ON(Backing::plain);
    ASSERT_EQ(write_whole(mnt("f"), "some bytes"), 0) << errno_name(errno);
    struct stat st{};
    ASSERT_EQ(::stat(mnt("f").c_str(), &st), 0);
    EXPECT_EQ(st.st_blksize, 1048576);
    Fd fd(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::fstat(fd.get(), &st), 0);
    EXPECT_EQ(st.st_blksize, 1048576);
    // The backing file itself is untouched by the presentation.
    ASSERT_EQ(::stat(backing("f").c_str(), &st), 0);
    EXPECT_NE(st.st_blksize, 1048576);
}

TEST_F(DbOptSemantics, BadDioAlignValuesFailAtStartup) {
    DIOFS_REQUIRE_FUSE();
    for (const char* value : {"1000", "256"}) {
        SCOPED_TRACE(std::string("dio_align=") + value);
        DiofsMount m({"dbopt", std::string("dio_align=") + value});
        const std::string error = m.start(std::chrono::seconds(10));
        EXPECT_NE(error, "") << "diofs mounted with dio_align=" << value;
        EXPECT_FALSE(m.is_mounted());
        EXPECT_NE(error.find("dio_align"), std::string::npos)
            << "the startup error does not name dio_align:\n" << error;
        m.stop();
        EXPECT_NE(m.exit_description(), "") << "the daemon did not exit";
        EXPECT_EQ(m.exit_description().find("exited with status 0"), std::string::npos)
            << "the daemon " << m.exit_description();
        EXPECT_EQ(m.sanitizer_report(), "") << "the daemon's way out of a refused start";
    }
}

TEST_F(DbOptSemantics, DioAlign4096OnThePlainDirectoryWorks) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "dio_align=4096"});
    const std::string log = wait_for_log(mount(), "direct-I/O alignment of");
    EXPECT_NE(log.find("direct-I/O alignment of " + mount().backing() + ": 4096 bytes"),
              std::string::npos)
        << log;
    EXPECT_NE(log.find("dio_align option"), std::string::npos) << log;
    unaligned_writes_match(mnt("f"), ref("f"), backing("f"), 42, 400);
}

// An alignment below the device's own would fail every direct request: the daemon warns and
// uses the device's.
TEST_F(DbOptSemantics, DioAlignBelowTheDeviceRequirementUsesTheRequirement) {
    DIOFS_MOUNT_ON(Backing::xfs_4k, {"dbopt", "dio_align=512"});
    const std::string log = wait_for_log(mount(), "direct-I/O alignment of");
    EXPECT_NE(log.find("dio_align=512"), std::string::npos) << "no warning about dio_align:\n" << log;
    EXPECT_NE(log.find("direct-I/O alignment of " + mount().backing() + ": 4096 bytes"),
              std::string::npos)
        << log;
    unaligned_writes_match(mnt("f"), ref("f"), backing("f"), 45, 200);
    std::string out;
    ASSERT_EQ(write_whole(mnt("src"), random_bytes(1000003, 46)), 0);
    EXPECT_EQ(run_command({"cp", mnt("src"), mnt("dst")}, &out), 0) << out;
    EXPECT_EQ(read_whole(mnt("dst")), random_bytes(1000003, 46));
}

TEST_F(DbOptSemantics, LogNamesTheDiscoveredAlignmentOfThePlainDirectory) {
    DIOFS_MOUNT_ON(Backing::plain);
    const unsigned sector = logical_sector_size(mount().backing());
    ASSERT_GT(sector, 0u) << "cannot find the sector size of " << mount().backing();
    std::cout << "[ diofs    ] the plain directory's device has " << sector << "-byte sectors"
              << std::endl;
    const std::string log = wait_for_log(mount(), "direct-I/O alignment of");
    EXPECT_NE(log.find("direct-I/O alignment of " + mount().backing() + ": " +
                       std::to_string(sector) + " bytes"),
              std::string::npos)
        << log;
    unaligned_writes_match(mnt("f"), ref("f"), backing("f"), 43, 200);
}

TEST_F(DbOptSemantics, LogNamesTheDiscoveredAlignmentOfA4KSectorDevice) {
    DIOFS_MOUNT_ON(Backing::xfs_4k);
    const std::string log = wait_for_log(mount(), "direct-I/O alignment of");
    EXPECT_NE(log.find("direct-I/O alignment of " + mount().backing() + ": 4096 bytes"),
              std::string::npos)
        << log;
    unaligned_writes_match(mnt("f"), ref("f"), backing("f"), 44, 200);
}

TEST_F(DbOptSemantics, OneByteAtATimeWriterMakesTheRightFile) {
    DIOFS_MOUNT_ON(Backing::plain);
    const std::string want = random_bytes(9000, 5);  // three pages, some 18 sectors
    Fd fd(::open(mnt("bytes").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    for (size_t i = 0; i < want.size(); ++i)
        ASSERT_EQ(::write(fd.get(), &want[i], 1), 1) << "byte " << i << ": " << errno_name(errno);
    EXPECT_EQ(fd.close(), success());
    EXPECT_EQ(first_difference(read_whole(mnt("bytes")), want), "");
    EXPECT_EQ(first_difference(read_whole(backing("bytes")), want), "");

    // Backwards, one byte at a time from the end: every write is an odd piece inside a
    // sector that holds bytes written before.
    Fd back(::open(mnt("backwards").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(back);
    for (size_t i = 5000; i-- > 0;)
        ASSERT_EQ(::pwrite(back.get(), &want[i], 1, static_cast<off_t>(i)), 1) << "byte " << i;
    EXPECT_EQ(back.close(), success());
    EXPECT_EQ(first_difference(read_whole(mnt("backwards")), want.substr(0, 5000)), "");
    EXPECT_EQ(first_difference(read_whole(backing("backwards")), want.substr(0, 5000)), "");
}

TEST_F(DbOptSemantics, AppendWritersAppendAtTheRealEnd) {
    DIOFS_MOUNT_ON(Backing::plain);
    const std::string pool = random_bytes(1 << 20, 6);
    std::mt19937_64 rng(6);
    std::string want;
    Fd a(::open(mnt("log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    Fd b(::open(mnt("log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    Fd plain(::open(mnt("log").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(a && b && plain) << errno_name(errno);
    for (int i = 0; i < 300; ++i) {
        const size_t len = std::uniform_int_distribution<size_t>(1, i % 20 == 0 ? 300000 : 5000)(rng);
        const char* src = pool.data() + std::uniform_int_distribution<size_t>(0, 600000)(rng);
        if (i % 10 == 9) {
            // Someone else extends the file, past its end (a hole): the appenders follow.
            const off_t at = static_cast<off_t>(want.size()) +
                             std::uniform_int_distribution<off_t>(0, 10000)(rng);
            ASSERT_EQ(::pwrite(plain.get(), src, len, at), static_cast<ssize_t>(len));
            want.resize(static_cast<size_t>(at), '\0');
            want.append(src, len);
            continue;
        }
        Fd& fd = i % 2 ? a : b;
        // pwrite's offset is ignored with O_APPEND on Linux: it appends too.
        const bool positional = i % 3 == 0;
        ssize_t n = positional ? ::pwrite(fd.get(), src, len, 0) : ::write(fd.get(), src, len);
        ASSERT_EQ(n, static_cast<ssize_t>(len)) << "append #" << i << ": " << errno_name(errno);
        want.append(src, len);
        // write() leaves the position at the end; pwrite() never moves it.
        if (!positional) {
            EXPECT_EQ(::lseek(fd.get(), 0, SEEK_CUR), static_cast<off_t>(want.size()))
                << "position after append #" << i;
        }
    }
    EXPECT_EQ(a.close(), success());
    EXPECT_EQ(b.close(), success());
    EXPECT_EQ(plain.close(), success());
    EXPECT_EQ(first_difference(read_whole(mnt("log")), want), "");
    EXPECT_EQ(first_difference(read_whole(backing("log")), want), "");
}

TEST_F(DbOptSemantics, ConcurrentAppendersKeepEveryRecordWhole) {
    DIOFS_MOUNT_ON(Backing::plain);
    constexpr int kThreads = 4, kRecords = 300;
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            Fd fd(::open(mnt("log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
            if (!fd) {
                ++failures;
                return;
            }
            std::mt19937 rng(static_cast<unsigned>(t));
            for (int i = 0; i < kRecords; ++i) {
                // "<t>:<i>:<len>:" then len bytes of 'a'+t, then '\n'.
                const size_t len = std::uniform_int_distribution<size_t>(10, 2000)(rng);
                std::string rec = std::to_string(t) + ":" + std::to_string(i) + ":" +
                                  std::to_string(len) + ":" + std::string(len, static_cast<char>('a' + t)) + "\n";
                if (::write(fd.get(), rec.data(), rec.size()) != static_cast<ssize_t>(rec.size()))
                    ++failures;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    ASSERT_EQ(failures.load(), 0);
    const std::string got = read_whole(mnt("log"));
    EXPECT_EQ(got, read_whole(backing("log")));
    std::map<int, int> next;
    size_t at = 0;
    int records = 0;
    while (at < got.size()) {
        int t = -1, i = -1;
        size_t len = 0;
        int used = 0;
        ASSERT_EQ(std::sscanf(got.c_str() + at, "%d:%d:%zu:%n", &t, &i, &len, &used), 3)
            << "no record header at offset " << at;
        ASSERT_TRUE(t >= 0 && t < kThreads) << "at offset " << at;
        EXPECT_EQ(i, next[t]++) << "thread " << t << "'s records out of order at offset " << at;
        const size_t body = at + static_cast<size_t>(used);
        ASSERT_LE(body + len + 1, got.size()) << "record cut short at offset " << at;
        EXPECT_EQ(got.substr(body, len), std::string(len, static_cast<char>('a' + t)))
            << "record of thread " << t << " at offset " << at << " is mixed with other bytes";
        ASSERT_EQ(got[body + len], '\n') << "at offset " << at;
        at = body + len + 1;
        ++records;
    }
    EXPECT_EQ(records, kThreads * kRecords);
}

// A shared mapping of a file opened for writing (FOPEN_DIRECT_IO): with libfuse 3.14 the
// kernel refuses it (ENODEV); from 3.16 on the daemon asks for FUSE_CAP_DIRECT_IO_ALLOW_MMAP
// and it works, through the kernel's pages of the mount's file: what is written through it
// reaches the backing file by msync, and no page of either file is left cached after the close.
TEST_F(DbOptSemantics, MmapSharedAsLibfuseAllowsPrivateWorks) {
    DIOFS_MOUNT_ON(Backing::plain);
    const std::string want = random_bytes(10000, 8);
    ASSERT_EQ(write_whole(mnt("m"), want), 0);
    {
        Fd fd(::open(mnt("m").c_str(), O_RDWR | O_CLOEXEC));
        ASSERT_TRUE(fd);
        errno = 0;
        void* shared =
            ::mmap(nullptr, want.size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
#if DIOFS_LIBFUSE_MINOR >= 16
        ASSERT_NE(shared, MAP_FAILED) << errno_name(errno);
        char* bytes = static_cast<char*>(shared);
        EXPECT_EQ(std::string(bytes, want.size()), want);
        std::memcpy(bytes + 4090, "across a page", 13);
        EXPECT_EQ(::msync(shared, want.size(), MS_SYNC), 0) << errno_name(errno);
        ::munmap(shared, want.size());
#else
        EXPECT_EQ(shared, MAP_FAILED);
        EXPECT_EQ(errno, ENODEV) << errno_name(errno);
        if (shared != MAP_FAILED)
            ::munmap(shared, want.size());
#endif
    }
    std::string now = want;
#if DIOFS_LIBFUSE_MINOR >= 16
    now.replace(4090, 13, "across a page");
    long cached = -1;
    for (int i = 0; i < 100 && cached != 0; ++i) {  // the drop at release is asynchronous
        Fd probe(::open(mnt("m").c_str(), O_RDONLY | O_CLOEXEC));
        cached = cachestat_pages(probe.get());
        if (cached != 0)
            ::usleep(10000);
    }
    EXPECT_EQ(cached, 0) << "pages of the mount's file still cached after the close";
    EXPECT_EQ(resident_pages(backing("m")), 0);
    EXPECT_EQ(read_whole(backing("m")), now);
#endif

    Fd fd(::open(mnt("m").c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd);
    void* priv = ::mmap(nullptr, want.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
    ASSERT_NE(priv, MAP_FAILED) << errno_name(errno);
    EXPECT_EQ(std::string(static_cast<const char*>(priv), want.size()), now);
    static_cast<char*>(priv)[0] ^= 1;  // a private copy: the file does not change
    ::munmap(priv, want.size());
    EXPECT_EQ(read_whole(mnt("m")), now);
}

TEST_F(DbOptSemantics, ProgramCopiedIntoTheMountRuns) {
    DIOFS_MOUNT_ON(Backing::plain);
    char real[PATH_MAX];
    ASSERT_NE(::realpath("/bin/echo", real), nullptr);
    const std::string program = read_whole(real);
    ASSERT_GT(program.size(), 1000u);
    ASSERT_EQ(write_whole(mnt("echo"), program, 0755), 0) << errno_name(errno);
    ASSERT_EQ(::chmod(mnt("echo").c_str(), 0755), 0);
    std::string out;
    EXPECT_EQ(run_command({mnt("echo"), "run", "from", "dbopt"}, &out), 0) << out;
    EXPECT_EQ(out, "run from dbopt\n");
    EXPECT_EQ(read_whole(backing("echo")), program);
}

TEST_F(DbOptSemantics, FsyncAndFdatasyncSucceed) {
    DIOFS_MOUNT_ON(Backing::plain);
    const std::string data = random_bytes(70001, 9);
    Fd fd(::open(mnt("s").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite(fd.get(), data.data() + 3, 50000, 1234), 50000);
    EXPECT_EQ(::fsync(fd.get()), 0) << errno_name(errno);
    ASSERT_EQ(::pwrite(fd.get(), data.data(), 777, 60001), 777);
    EXPECT_EQ(::fdatasync(fd.get()), 0) << errno_name(errno);
    Fd ro(::open(mnt("s").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(ro);
    EXPECT_EQ(::fsync(ro.get()), 0) << errno_name(errno);
    EXPECT_EQ(::fdatasync(ro.get()), 0) << errno_name(errno);
    EXPECT_EQ(fd.close(), success());
    std::string want(1234, '\0');
    want += data.substr(3, 50000);
    want.resize(60001, '\0');
    want += data.substr(0, 777);
    EXPECT_EQ(first_difference(read_whole(mnt("s")), want), "");
    EXPECT_EQ(first_difference(read_whole(backing("s")), want), "");
}

TEST_F(DbOptSemantics, OsyncOdsyncAndOdirectOpensWork) {
    DIOFS_MOUNT_ON(Backing::plain);
    const std::string data = random_bytes(300000, 10);
    for (int flag : {O_SYNC, O_DSYNC, O_DIRECT, O_DIRECT | O_SYNC}) {
        SCOPED_TRACE("open flags 0" + octal(static_cast<unsigned>(flag)));
        const std::string name = "sync" + std::to_string(flag);
        Fd fd(::open(mnt(name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | flag, 0644));
        ASSERT_TRUE(fd) << errno_name(errno);
        std::string want;
        // Odd offsets, odd lengths, odd buffer addresses: the caller's O_DIRECT is not the
        // backing file's, and no tool sees EINVAL for alignment.
        struct Piece { size_t src, len; off_t at; };
        for (Piece p : {Piece{1, 1, 0}, Piece{7, 511, 1}, Piece{100, 4097, 700},
                        Piece{3, 200001, 5000}, Piece{5, 3, 205001}, Piece{9, 60000, 210000}}) {
            ASSERT_EQ(::pwrite(fd.get(), data.data() + p.src, p.len, p.at),
                      static_cast<ssize_t>(p.len))
                << "pwrite at " << p.at << " length " << p.len << ": " << errno_name(errno);
            if (want.size() < static_cast<size_t>(p.at) + p.len)
                want.resize(static_cast<size_t>(p.at) + p.len, '\0');
            want.replace(static_cast<size_t>(p.at), p.len, data, p.src, p.len);
        }
        std::string got(want.size() + 10, '\0');
        ssize_t n = ::pread(fd.get(), got.data() + 1, want.size() + 5, 0);
        ASSERT_EQ(n, static_cast<ssize_t>(want.size())) << errno_name(errno);
        EXPECT_EQ(first_difference(got.substr(1, want.size()), want), "") << "pread";
        EXPECT_EQ(fd.close(), success());
        EXPECT_EQ(first_difference(read_whole(backing(name)), want), "") << "the backing file";
    }
}

}  // namespace
}  // namespace diofs_test

// Read-ahead and write coalescing under dbopt (the default options), through a real mount: when
// held-back writes reach the backing file, and what everyone sees meanwhile.
//
// - a reader and a writer on one file through two descriptors: every byte written before a read
//   is seen by it (a read writes out what the inode's other descriptors hold back), also while
//   the reader's read-ahead holds the old bytes, and with the two in different threads;
// - stat during pending writes: the size includes them, while the backing file shows they were
//   really held back (it is shorter until close);
// - what writes them out: fsync, close, a read, truncate, utimes (whose times must stay), chmod,
//   fallocate, lseek(SEEK_DATA), copy_file_range from and into the file; an open with O_TRUNC
//   through another descriptor truncates what was written before it;
// - files opened O_SYNC, O_DSYNC or O_DIRECT, and mounts with writebehind=0 or strict, are not
//   coalesced: the bytes are on the backing file when write returns;
// - eight streams on a mount with dbopt_mem=4M: the buffers never exceed it (SIGUSR1's stats),
//   all are given back once the files are closed, and every byte is right;
// - a full disk (a small loop filesystem): ENOSPC found by a writeout surfaces at a write, fsync
//   or close, never as a success, and the backing file holds a prefix of what was written.
//
// The backing files are read with O_DIRECT (read_direct), which leaves the page cache alone.

#include "dbopt_support.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>

namespace diofs_test {
namespace {

std::string bytes(size_t n, uint64_t seed) { return random_bytes_from<std::mt19937_64>(n, seed); }

// The size of `path` (stat), or -1.
long long size_of(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<long long>(st.st_size) : -1;
}

long long fsize_of(int fd) {
    struct stat st{};
    return ::fstat(fd, &st) == 0 ? static_cast<long long>(st.st_size) : -1;
}

// Bytes [offset, offset + length) of `fd`, read in one pread (short at the end of the file).
std::string pread_string(int fd, uint64_t offset, size_t length) {
    std::string buf(length, '\0');
    ssize_t n = ::pread(fd, buf.data(), length, static_cast<off_t>(offset));
    buf.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return buf;
}

std::string backing_bytes(const std::string& path) {
    std::optional<std::string> s = read_direct(path);
    return s ? *s : "<unreadable: " + errno_name(errno) + ">";
}

class DbOptStreaming : public DbOptTest {
protected:
    // The default options: read-ahead, and writes through the writeback window (libfuse
    // 3.16+) or coalesced (3.14).
    void SetUp() override { mount_on(Backing::plain, {"dbopt"}); }
};

// Writes coalesced in the daemon whatever the build (writeback=0): what is held back there.
class DbOptCoalescing : public DbOptTest {
protected:
    void SetUp() override { mount_on(Backing::plain, {"dbopt", "writeback=0"}); }
};

// A writer appends records of every size (and now and then rewrites old bytes) through one
// descriptor; after each write the reader, through another, reads what was just written and
// now and then the whole file sequentially (so that its read-ahead holds chunks the writer
// then changes): it must see every byte written before its read.
TEST_F(DbOptStreaming, AReaderSeesEveryByteTheWriterWroteBeforeTheRead) {
    if (IsSkipped() || HasFatalFailure())
        return;
    Fd w(::open(mnt("f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    Fd r(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(w && r) << errno_name(errno);
    std::mt19937_64 rng(21);
    const std::string pool = bytes(3 << 20, 21);
    std::string want;
    for (int i = 0; i < 300; ++i) {
        const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
        size_t len = std::uniform_int_distribution<size_t>(1, kind == 0 ? (2 << 20) : 70000)(rng);
        uint64_t at = want.size();
        if (kind == 1 && want.size() > 10)  // a rewrite of earlier bytes
            at = std::uniform_int_distribution<uint64_t>(0, want.size() - 1)(rng);
        const size_t from = std::uniform_int_distribution<size_t>(0, (1 << 20) - 1)(rng);
        ASSERT_EQ(::pwrite(w.get(), pool.data() + from, len, static_cast<off_t>(at)),
                  static_cast<ssize_t>(len))
            << "write #" << i << ": " << errno_name(errno);
        if (want.size() < at + len)
            want.resize(at + len, '\0');
        want.replace(at, len, pool, from, len);
        ASSERT_EQ(first_difference(pread_string(r.get(), at, len), want.substr(at, len), at), "")
            << "write #" << i << " at " << at << " length " << len
            << ": the reader does not see the bytes just written";
        if (i % 25 == 24) {
            // Sequentially, in 64 KiB reads: read-ahead on the reader's side.
            std::string got;
            for (uint64_t off = 0;; off += 65536) {
                std::string piece = pread_string(r.get(), off, 65536);
                got += piece;
                if (piece.size() < 65536)
                    break;
                // Halfway, the writer changes bytes the reader has probably read ahead.
                if (off == 4 * 65536 && want.size() > 2 * 1048576) {
                    const uint64_t x = 1048576 + 100;
                    ASSERT_EQ(::pwrite(w.get(), pool.data() + 5, 5000, static_cast<off_t>(x)), 5000);
                    want.replace(x, 5000, pool, 5, 5000);
                }
            }
            ASSERT_EQ(first_difference(got, want), "")
                << "after write #" << i << ", a sequential read of the whole file";
        }
    }
    EXPECT_EQ(w.close(), success());
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), want), "") << "the backing file";
}

// Read-ahead holds the bytes ahead of a sequential reader; a write through another descriptor
// (and through the reader's own) must be seen when the reader gets there.
TEST_F(DbOptStreaming, AWriteDropsWhatTheReaderReadAhead) {
    if (IsSkipped() || HasFatalFailure())
        return;
    std::string want = bytes(8 << 20, 22);
    ASSERT_EQ(write_whole(mnt("f"), want), 0) << errno_name(errno);
    Fd r(::open(mnt("f").c_str(), O_RDWR | O_CLOEXEC));
    Fd w(::open(mnt("f").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(r && w) << errno_name(errno);
    const std::string fresh = bytes(70000, 23);
    std::string got;
    for (uint64_t off = 0; off < want.size(); off += 131072) {
        if (off == 262144) {
            // The reader has read 256 KiB: the next 4 MiB are being read ahead.
            ASSERT_EQ(::pwrite(w.get(), fresh.data(), 5000, 1048576 + 7), 5000);
            want.replace(1048576 + 7, 5000, fresh, 0, 5000);
            ASSERT_EQ(::pwrite(w.get(), fresh.data(), 70000, 3 * 1048576 - 10), 70000);
            want.replace(3 * 1048576 - 10, 70000, fresh);
        }
        if (off == 4 * 1048576) {
            // Through the reader's own descriptor, ahead of itself.
            ASSERT_EQ(::pwrite(r.get(), fresh.data() + 1, 333, 5 * 1048576 + 1), 333);
            want.replace(5 * 1048576 + 1, 333, fresh, 1, 333);
        }
        got += pread_string(r.get(), off, 131072);
    }
    EXPECT_EQ(first_difference(got, want), "") << "a sequential reader missed a write";
    EXPECT_EQ(w.close(), success());
    EXPECT_EQ(r.close(), success());
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), want), "") << "the backing file";
}

// Changes other than writes (truncate down and up, a punched hole, a copy into the file) through
// another descriptor: a sequential reader must see them too, not what it read ahead before.
TEST_F(DbOptStreaming, OtherChangesDropWhatTheReaderReadAhead) {
    if (IsSkipped() || HasFatalFailure())
        return;
    std::string want = bytes(8 << 20, 34);
    ASSERT_EQ(write_whole(mnt("f"), want), 0) << errno_name(errno);
    ASSERT_EQ(write_whole(mnt("src"), bytes(1 << 20, 35)), 0) << errno_name(errno);
    Fd r(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
    Fd w(::open(mnt("f").c_str(), O_RDWR | O_CLOEXEC));
    Fd src(::open(mnt("src").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(r && w && src) << errno_name(errno);
    std::string got;
    for (uint64_t off = 0; off < want.size(); off += 65536) {
        if (off == 131072) {
            ASSERT_EQ(::ftruncate(w.get(), 1000000), 0) << errno_name(errno);
            ASSERT_EQ(::ftruncate(w.get(), 8 << 20), 0) << errno_name(errno);
            std::fill(want.begin() + 1000000, want.end(), '\0');
        }
        if (off == 1 << 20) {
            // Bytes again where the reader will be, then a hole punched in them.
            const std::string again = bytes(3 << 20, 36);
            ASSERT_EQ(::pwrite(w.get(), again.data(), again.size(), 1 << 20),
                      static_cast<ssize_t>(again.size()));
            want.replace(1 << 20, again.size(), again);
            got += pread_string(r.get(), off, 65536);  // read-ahead of the new bytes
            off += 65536;
            ASSERT_EQ(::fallocate(w.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  (1 << 20) + 300000, 500000),
                      0)
                << errno_name(errno);
            std::fill(want.begin() + (1 << 20) + 300000, want.begin() + (1 << 20) + 800000, '\0');
            loff_t in = 0, out = (2 << 20) + 4096;
            ssize_t n = ::copy_file_range(src.get(), &in, w.get(), &out, 1 << 20, 0);
            ASSERT_GT(n, 0) << errno_name(errno);
            want.replace((2 << 20) + 4096, static_cast<size_t>(n),
                         read_whole(mnt("src")).substr(0, static_cast<size_t>(n)));
        }
        got += pread_string(r.get(), off, 65536);
    }
    EXPECT_EQ(first_difference(got, want), "") << "a sequential reader missed a change";
    EXPECT_EQ(w.close(), success());
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), want), "") << "the backing file";
}

// The writer and the reader in two threads: the writer appends and says how far its writes
// have returned; the reader reads sequentially up to there (read-ahead), again and again, and
// must find exactly the bytes written.
TEST_F(DbOptStreaming, AConcurrentReaderSeesEveryReturnedWrite) {
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string data = bytes(24 << 20, 24);
    Fd w(::open(mnt("f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    Fd r(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(w && r) << errno_name(errno);
    std::atomic<uint64_t> returned{0};
    std::atomic<bool> writer_failed{false};
    std::thread writer([&] {
        std::mt19937_64 rng(24);
        for (uint64_t at = 0; at < data.size();) {
            const size_t n = std::min<size_t>(
                std::uniform_int_distribution<size_t>(1, 200000)(rng), data.size() - at);
            if (::pwrite(w.get(), data.data() + at, n, static_cast<off_t>(at)) != static_cast<ssize_t>(n)) {
                writer_failed = true;
                return;
            }
            at += n;
            returned = at;
        }
    });
    std::string problem;
    long passes = 0;
    while (problem.empty()) {
        const bool last = returned.load() == data.size() || writer_failed;
        const uint64_t until = returned.load();
        uint64_t off = 0;
        while (off < until && problem.empty()) {
            const size_t n = static_cast<size_t>(std::min<uint64_t>(65536, until - off));
            std::string got = pread_string(r.get(), off, n);
            if (got.size() != n || got.compare(0, n, data, off, n) != 0)
                problem = "pass " + std::to_string(passes) + ": read at " + std::to_string(off) +
                          " of bytes whose write had returned: " +
                          first_difference(got, data.substr(off, n), off);
            off += n;
        }
        ++passes;
        if (last)
            break;
    }
    writer.join();
    EXPECT_FALSE(writer_failed.load()) << "a write failed: " << errno_name(errno);
    EXPECT_EQ(problem, "");
    EXPECT_EQ(w.close(), success());
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), data), "") << "the backing file";
    std::cout << "[ diofs    ] " << passes << " sequential passes of the reader" << std::endl;
}

// 100 bytes at 0, then 5,000 bytes after them: held back (the backing file is still empty), yet
// stat through the mount says 5,100, from the kernel's cache and from the daemon (once the
// cache timed out); after close the backing file has them.
TEST_F(DbOptStreaming, StatIncludesPendingWrites) {
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string data = bytes(5100, 25);
    Fd fd(::open(mnt("f").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    ASSERT_EQ(::write(fd.get(), data.data(), 100), 100);
    ASSERT_EQ(::write(fd.get(), data.data() + 100, 5000), 5000);
    EXPECT_EQ(fsize_of(fd.get()), 5100) << "fstat through the mount";
    EXPECT_EQ(size_of(mnt("f")), 5100) << "stat through the mount";
    EXPECT_LT(size_of(backing("f")), 5100) << "the writes were not held back at all";
    // The kernel asks the daemon again after its attribute cache (1 s) times out: getattr of
    // the open file, and lookup of the name.
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    EXPECT_EQ(fsize_of(fd.get()), 5100) << "fstat through the mount, from the daemon";
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    EXPECT_EQ(size_of(mnt("f")), 5100) << "stat of the name through the mount, from the daemon";
    Fd other(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC | O_PATH));
    ASSERT_TRUE(other);
    EXPECT_EQ(fsize_of(other.get()), 5100) << "fstat of another descriptor";
    const long long pending_backing = size_of(backing("f"));
    EXPECT_LT(pending_backing, 5100) << "something wrote the pending bytes out before close";
    EXPECT_EQ(fd.close(), success());
    EXPECT_EQ(size_of(backing("f")), 5100);
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), data), "");
    std::cout << "[ diofs    ] while pending: 5100 bytes through the mount, " << pending_backing
              << " in the backing file" << std::endl;
}

// Each of these writes out what the inode's descriptors hold back before it acts.
TEST_F(DbOptStreaming, FsyncCloseAndReadsWriteOutWhatIsHeldBack) {
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string data = bytes(30000, 26);
    Fd fd(::open(mnt("f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite(fd.get(), data.data(), 10000, 0), 10000);
    EXPECT_LT(size_of(backing("f")), 10000) << "not held back";
    ASSERT_EQ(::fsync(fd.get()), 0) << errno_name(errno);
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), data.substr(0, 10000)), "")
        << "after fsync";

    ASSERT_EQ(::pwrite(fd.get(), data.data() + 10000, 10000, 10000), 10000);
    EXPECT_LT(size_of(backing("f")), 20000) << "not held back";
    ASSERT_EQ(::fdatasync(fd.get()), 0) << errno_name(errno);
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), data.substr(0, 20000)), "")
        << "after fdatasync";

    ASSERT_EQ(::pwrite(fd.get(), data.data() + 20000, 5000, 20000), 5000);
    {
        // fsync of another descriptor of the file, even a read-only one.
        Fd ro(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
        ASSERT_TRUE(ro);
        ASSERT_EQ(::fsync(ro.get()), 0) << errno_name(errno);
        EXPECT_EQ(first_difference(backing_bytes(backing("f")), data.substr(0, 25000)), "")
            << "after fsync of another descriptor";
    }

    ASSERT_EQ(::pwrite(fd.get(), data.data() + 25000, 5000, 25000), 5000);
    {
        Fd ro(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
        ASSERT_TRUE(ro);
        char c;
        ASSERT_EQ(::pread(ro.get(), &c, 1, 0), 1);
        EXPECT_EQ(first_difference(backing_bytes(backing("f")), data), "")
            << "after a read through another descriptor";
    }
    ASSERT_EQ(::pwrite(fd.get(), data.data(), 3, 30000), 3);
    EXPECT_EQ(fd.close(), success());
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), data + data.substr(0, 3)), "")
        << "after close";
}

TEST_F(DbOptCoalescing, TruncateWritesOutFirstThenCuts) {
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string data = bytes(50000, 27);
    Fd fd(::open(mnt("f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite(fd.get(), data.data(), 50000, 0), 50000);
    ASSERT_EQ(::truncate(mnt("f").c_str(), 30000), 0) << errno_name(errno);
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), data.substr(0, 30000)), "")
        << "after truncate by name";
    ASSERT_EQ(::pwrite(fd.get(), data.data(), 20000, 30000), 20000);
    ASSERT_EQ(::ftruncate(fd.get(), 40000), 0) << errno_name(errno);
    const std::string want = data.substr(0, 30000) + data.substr(0, 10000);
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), want), "") << "after ftruncate";
    EXPECT_EQ(fd.close(), success());
    EXPECT_EQ(first_difference(read_whole(mnt("f")), want), "");
    EXPECT_EQ(size_of(backing("f")), 40000);
}

// utimes and chmod are setattr: held-back writes go out first, so the times set stay (a write
// landing after them would move mtime).
TEST_F(DbOptStreaming, TimesSetAfterWritesStay) {
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string data = bytes(20000, 28);
    Fd fd(::open(mnt("f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::write(fd.get(), data.data(), 20000), 20000);
    const struct timespec times[2] = {{978307200, 0}, {978307200, 0}};  // 2001-01-01
    ASSERT_EQ(::futimens(fd.get(), times), 0) << errno_name(errno);
    EXPECT_EQ(first_difference(backing_bytes(backing("f")), data), "") << "after futimens";
    ASSERT_EQ(::write(fd.get(), data.data(), 100), 100);
    ASSERT_EQ(::chmod(mnt("f").c_str(), 0600), 0) << errno_name(errno);
    EXPECT_EQ(size_of(backing("f")), 20100) << "after chmod";
    ASSERT_EQ(::write(fd.get(), data.data(), 100), 100);
    ASSERT_EQ(::utimensat(AT_FDCWD, mnt("f").c_str(), times, 0), 0) << errno_name(errno);
    EXPECT_EQ(fd.close(), success());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    struct stat sb{};
    ASSERT_EQ(::stat(backing("f").c_str(), &sb), 0);
    EXPECT_EQ(sb.st_mtim.tv_sec, 978307200) << "a held-back write landed after utimensat";
    EXPECT_EQ(sb.st_size, 20200);
    EXPECT_EQ(sb.st_mode & 07777, 0600u);
}

TEST_F(DbOptCoalescing, FallocateLseekAndCopyFileRangeSeeHeldBackWrites) {
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string data = bytes(300000, 29);
    // lseek(SEEK_DATA) on a file whose only data is held back.
    Fd fd(::open(mnt("f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::pwrite(fd.get(), data.data(), 5000, 1 << 20), 5000);
    const off_t data_at = ::lseek(fd.get(), 0, SEEK_DATA);
    EXPECT_GE(data_at, 0) << "SEEK_DATA found no data: " << errno_name(errno);
    EXPECT_LE(data_at, 1 << 20);
    EXPECT_EQ(size_of(backing("f")), (1 << 20) + 5000) << "after lseek";

    // fallocate.
    ASSERT_EQ(::pwrite(fd.get(), data.data(), 7000, (1 << 20) + 5000), 7000);
    ASSERT_EQ(::fallocate(fd.get(), 0, 0, 4096), 0) << errno_name(errno);
    EXPECT_EQ(size_of(backing("f")), (1 << 20) + 12000) << "after fallocate";

    // copy_file_range from a file with held-back writes, and into one.
    Fd src(::open(mnt("src").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    Fd dst(::open(mnt("dst").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(src && dst);
    ASSERT_EQ(::pwrite(src.get(), data.data(), 300000, 0), 300000);
    ASSERT_EQ(::pwrite(dst.get(), data.data() + 7, 200000, 0), 200000);
    std::string want = data.substr(7, 200000);
    loff_t in = 1000, out = 150001;
    size_t total = 0;
    while (total < 100000) {
        ssize_t n = ::copy_file_range(src.get(), &in, dst.get(), &out, 100000 - total, 0);
        ASSERT_GT(n, 0) << errno_name(errno);
        total += static_cast<size_t>(n);
    }
    want.resize(250001, '\0');
    want.replace(150001, 100000, data, 1000, 100000);
    EXPECT_EQ(first_difference(read_whole(mnt("dst")), want), "") << "through the mount";
    EXPECT_EQ(dst.close(), success());
    EXPECT_EQ(src.close(), success());
    EXPECT_EQ(fd.close(), success());
    EXPECT_EQ(first_difference(backing_bytes(backing("dst")), want), "") << "the backing file";
}

// open(O_TRUNC) through another descriptor comes after the writes before it: the file is
// empty, and stays so when the writer closes.
TEST_F(DbOptStreaming, OpenWithTruncateCutsWritesHeldBackByAnotherDescriptor) {
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string data = bytes(10000, 30);
    Fd w(::open(mnt("f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(w);
    ASSERT_EQ(::pwrite(w.get(), data.data(), 10000, 0), 10000);
    ASSERT_EQ(::fsync(w.get()), 0);
    ASSERT_EQ(::pwrite(w.get(), data.data(), 8455, 2277836), 8455);  // held back
    Fd t(::open(mnt("f").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    ASSERT_TRUE(t) << errno_name(errno);
    EXPECT_EQ(fsize_of(t.get()), 0) << "the size right after open(O_TRUNC)";
    EXPECT_EQ(pread_string(w.get(), 0, 100).size(), 0u) << "a read right after open(O_TRUNC)";
    EXPECT_EQ(w.close(), success());
    EXPECT_EQ(t.close(), success());
    EXPECT_EQ(size_of(mnt("f")), 0) << "through the mount, once both are closed";
    EXPECT_EQ(size_of(backing("f")), 0) << "the backing file, once both are closed";
}

// Not coalesced: the caller asked for synchronous or direct I/O.
TEST_F(DbOptStreaming, SyncAndDirectOpensAreNotHeldBack) {
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string data = bytes(10000, 31);
    for (int flag : {O_SYNC, O_DSYNC, O_DIRECT}) {
        SCOPED_TRACE("open flags 0" + octal(static_cast<unsigned>(flag)));
        const std::string name = "f" + std::to_string(flag);
        Fd fd(::open(mnt(name).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flag, 0644));
        ASSERT_TRUE(fd) << errno_name(errno);
        ASSERT_EQ(::write(fd.get(), data.data(), 100), 100) << errno_name(errno);
        EXPECT_EQ(first_difference(backing_bytes(backing(name)), data.substr(0, 100)), "")
            << "the first write is not on the backing file when it returns";
        ASSERT_EQ(::write(fd.get(), data.data() + 100, 5000), 5000) << errno_name(errno);
        EXPECT_EQ(first_difference(backing_bytes(backing(name)), data.substr(0, 5100)), "")
            << "the second write is not on the backing file when it returns";
        EXPECT_EQ(fd.close(), success());
    }
}

// Mounts that do not coalesce: strict, and writebehind=0 (read-ahead still on).
class DbOptNotCoalescing : public DbOptTest,
                           public ::testing::WithParamInterface<std::vector<std::string>> {};

TEST_P(DbOptNotCoalescing, WritesAreOnTheBackingFileWhenTheyReturn) {
    DIOFS_MOUNT_ON(Backing::plain, GetParam());
    const std::string data = bytes(300000, 32);
    Fd fd(::open(mnt("f").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    size_t done = 0;
    for (size_t len : {size_t{100}, size_t{5000}, size_t{1}, size_t{200000}, size_t{94899}}) {
        ASSERT_EQ(::write(fd.get(), data.data() + done, len), static_cast<ssize_t>(len));
        done += len;
        EXPECT_EQ(size_of(backing("f")), static_cast<long long>(done));
        EXPECT_EQ(first_difference(backing_bytes(backing("f")), data.substr(0, done)), "")
            << "after " << done << " bytes";
    }
    // Reads (with read-ahead where it is on) see them too.
    EXPECT_EQ(first_difference(pread_string(fd.get(), 0, data.size()), data), "");
    EXPECT_EQ(fd.close(), success());
}

INSTANTIATE_TEST_SUITE_P(Mounts, DbOptNotCoalescing,
                         ::testing::Values(std::vector<std::string>{"dbopt", "strict"},
                                           std::vector<std::string>{"dbopt", "writebehind=0"},
                                           std::vector<std::string>{"dbopt", "strict",
                                                                    "writebehind=8M"}),
                         [](const auto& p) {
                             return p.index == 0   ? std::string("Strict")
                                    : p.index == 1 ? std::string("WritebehindZero")
                                                   : std::string("StrictOverridesWritebehind");
                         });

// The value of `key=<n>` in the last "stats:" line of `log` (SIGUSR1's), or -1.
long long stats_value(const std::string& log, const std::string& key) {
    const size_t line = log.rfind("stats:");
    if (line == std::string::npos)
        return -1;
    const size_t at = log.find(" " + key + "=", line);
    if (at == std::string::npos || log.find('\n', line) < at)
        return -1;
    return std::strtoll(log.c_str() + at + key.size() + 2, nullptr, 10);
}

// A close gives back the room a stream reserved past the end of the file by truncating the
// file to the size it reads: a truncate through the mount landing between the two would be
// undone (DirectFile::give_back_room, which holds the inode's `writing` lock from the one to
// the other, as every resize through the mount does for its system call). Tried hard: 400
// rounds of a stream of held writes whose close races, started at the same instant, a
// truncate(2) by path that extends the file past all of it; the file always ends as long as
// the truncate made it, whichever came first.
TEST(DbOptStreamingResize, AnExtendingTruncateRacingACloseIsNeverUndone) {
    DIOFS_REQUIRE_FUSE();
    DiofsMount m({"dbopt"});
    ASSERT_EQ(m.start(), "");
    const std::string path = m.mnt() + "/racing";
    const std::string backing = m.backing() + "/racing";
    const std::string data = bytes(320 << 10, 77);
    constexpr long long kExtended = 8 << 20;
    for (int round = 0; round < 400; ++round) {
        Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        ASSERT_TRUE(fd) << errno_name(errno);
        for (size_t at = 0; at < data.size(); at += 65536)  // held back, reserving ahead
            ASSERT_EQ(::write(fd.get(), data.data() + at, 65536), 65536) << errno_name(errno);
        std::atomic<int> ready{0};
        int truncated = 0;
        std::thread resizer([&] {
            ready.fetch_add(1);
            while (ready.load() < 2) {
            }
            truncated = ::truncate(path.c_str(), kExtended) == 0 ? 0 : errno;
        });
        ready.fetch_add(1);
        while (ready.load() < 2) {
        }
        const auto closed = fd.close();
        resizer.join();
        ASSERT_TRUE(closed.ok()) << "round " << round;
        ASSERT_EQ(truncated, 0) << "round " << round << ": " << errno_name(truncated);
        ASSERT_EQ(size_of(backing), kExtended)
            << "round " << round << ": the truncate was undone by the close's give-back";
    }
}

// Eight streams at once (four writers, four readers) on a mount with 4 MiB of buffers: the
// memory used for read-ahead and coalescing never goes over the limit (a file that finds none
// reads and writes directly), every byte is right, and once the files are closed every buffer
// is given back.
TEST(DbOptStreamingMemory, EightStreamsStayWithinDboptMem) {
    DIOFS_REQUIRE_FUSE();
    DiofsMount m({"dbopt", "dbopt_mem=4M"});
    ASSERT_EQ(m.start(), "");
    constexpr int kStreams = 4;
    constexpr size_t kBytes = 12 << 20;
    std::vector<std::string> data;
    for (int i = 0; i < kStreams; ++i) {
        data.push_back(bytes(kBytes, 40 + static_cast<uint64_t>(i)));
        ASSERT_EQ(write_whole(m.mnt() + "/in" + std::to_string(i), data.back()), 0);
    }
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kStreams; ++i) {
        threads.emplace_back([&, i] {  // a writer, in 100,000-byte writes
            Fd fd(::open((m.mnt() + "/out" + std::to_string(i)).c_str(),
                         O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
            for (size_t at = 0; fd && at < kBytes; at += 100000) {
                const size_t n = std::min<size_t>(100000, kBytes - at);
                if (::write(fd.get(), data[static_cast<size_t>(i)].data() + at, n) != static_cast<ssize_t>(n))
                    ++failures;
            }
            if (!fd || !fd.close().ok())
                ++failures;
        });
        threads.emplace_back([&, i] {  // a reader, in 64 KiB reads
            Fd fd(::open((m.mnt() + "/in" + std::to_string(i)).c_str(), O_RDONLY | O_CLOEXEC));
            std::string got;
            for (uint64_t at = 0; fd; at += 65536) {
                std::string piece = pread_string(fd.get(), at, 65536);
                got += piece;
                if (piece.size() < 65536)
                    break;
            }
            if (got != data[static_cast<size_t>(i)])
                ++failures;
        });
    }
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(failures.load(), 0) << "a stream went wrong";
    for (int i = 0; i < kStreams; ++i) {
        EXPECT_EQ(first_difference(backing_bytes(m.backing() + "/out" + std::to_string(i)),
                                   data[static_cast<size_t>(i)]),
                  "")
            << "out" << i;
    }
    // Released files give their buffers back (release may follow close by a moment).
    long long in_use = -1, peak = -1, limit = -1;
    std::string log;
    for (int tries = 0; tries < 50; ++tries) {
        ASSERT_TRUE(m.inode_count().has_value()) << "no stats line after SIGUSR1";
        log = m.log();
        in_use = stats_value(log, "pool.in_use");
        peak = stats_value(log, "pool.peak");
        limit = stats_value(log, "pool.limit");
        if (in_use == 0)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(limit, 4 << 20) << "the stats line does not say the limit:\n" << m.log_tail(5);
    EXPECT_GT(peak, 0) << "no buffer was ever used:\n" << m.log_tail(5);
    EXPECT_LE(peak, 4 << 20) << "more buffer memory than dbopt_mem:\n" << m.log_tail(5);
    EXPECT_EQ(in_use, 0) << "buffers still in use with every file closed:\n" << m.log_tail(5);
    std::cout << "[ diofs    ] buffers: peak " << (peak >> 10) << " KiB of " << (limit >> 10)
              << " KiB" << std::endl;
    EXPECT_EQ(m.stop(), "");
}

// --- A full disk ----------------------------------------------------------------------------------

enum class Mode { strict, coalescing };

void PrintTo(Mode m, std::ostream* os) { *os << (m == Mode::strict ? "strict" : "coalescing"); }

using FullDiskParam = std::tuple<std::string, Mode>;

class DbOptFullDisk : public DbOptTest, public ::testing::WithParamInterface<FullDiskParam> {
protected:
    // diofs with `options` over backing/ on a fresh, small `fstype` loop filesystem.
    void mount_on_small_loop(const std::string& fstype, uint64_t bytes,
                             std::vector<std::string> options) {
        DIOFS_REQUIRE_FUSE();
        ::umask(022);
        mount_ = std::make_unique<DiofsMount>(options);
        ASSERT_NO_FATAL_FAILURE(make_loop(fstype, bytes));
        if (IsSkipped())
            return;
        const std::string b = loop_->path("backing");
        ASSERT_EQ(::mkdir(b.c_str(), 0755), 0) << b << ": " << errno_name(errno);
        mount_->use_directories(b);
        ASSERT_EQ(mount_->start(), "") << "could not mount diofs over a small " << fstype;
    }
};

// 64 KiB writes of a pattern until one fails; then fsync and close. Coalescing: the failure of a
// writeout must surface at a write, fsync or close (at least one of them fails), always as
// ENOSPC; the backing file holds a prefix of the pattern. Strict: the write that finds the disk
// full fails with ENOSPC, every byte reported written is in the file, fsync and close succeed.
// Then, the file removed, writing works again.
TEST_P(DbOptFullDisk, EnospcIsReportedAndTheBytesBeforeItAreKept) {
    const auto [fstype, mode] = GetParam();
    const uint64_t fs_bytes = fstype == "xfs" ? 320ull << 20 : 64ull << 20;  // xfs: 300 MiB at least
    std::vector<std::string> options = {"dbopt"};
    if (mode == Mode::strict)
        options.push_back("strict");
    ASSERT_NO_FATAL_FAILURE(mount_on_small_loop(fstype, fs_bytes, options));
    if (IsSkipped())
        return;
    constexpr size_t kWrite = 64 << 10;
    const std::string pattern = bytes(fs_bytes + (64 << 20), 33);
    Fd fd(::open(mnt("fill").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    uint64_t accepted = 0;
    int write_error = 0;
    while (accepted + kWrite <= pattern.size()) {
        ssize_t n = ::write(fd.get(), pattern.data() + accepted, kWrite);
        if (n < 0) {
            write_error = errno;
            break;
        }
        ASSERT_GT(n, 0) << "write returned 0";
        accepted += static_cast<uint64_t>(n);
    }
    const Outcome synced = capture([&] { return ::fsync(fd.get()); });
    const Outcome closed = fd.close();
    std::cout << "[ diofs    ] " << accepted << " bytes taken by write, then "
              << (write_error ? "a write failed with " + errno_name(write_error)
                              : std::string("no write failed"))
              << "; fsync " << synced << ", close " << closed << "; backing file "
              << size_of(backing("fill")) << " bytes" << std::endl;
    ASSERT_LT(accepted + kWrite, pattern.size()) << "the disk never filled up";

    if (mode == Mode::strict) {
        EXPECT_EQ(write_error, ENOSPC) << "the write that found the disk full";
        EXPECT_EQ(synced, success()) << "fsync after ENOSPC (every byte reported was written)";
        EXPECT_EQ(closed, success()) << "close after ENOSPC";
        EXPECT_EQ(size_of(backing("fill")), static_cast<long long>(accepted));
    } else {
        EXPECT_TRUE(write_error != 0 || !synced.ok() || !closed.ok())
            << "the disk filled up and neither a write, nor fsync, nor close said so";
        if (write_error != 0) {
            EXPECT_EQ(write_error, ENOSPC) << "the error of the write";
        }
        if (!synced.ok()) {
            EXPECT_EQ(synced.err, ENOSPC) << "the error of fsync";
        }
        if (!closed.ok()) {
            EXPECT_EQ(closed.err, ENOSPC) << "the error of close";
        }
        EXPECT_LE(size_of(backing("fill")), static_cast<long long>(accepted))
            << "the backing file has more than was ever taken";
    }
    EXPECT_GT(size_of(backing("fill")), static_cast<long long>(fs_bytes / 2))
        << "the filesystem filled up with little of the file";
    EXPECT_EQ(size_of(mnt("fill")), size_of(backing("fill")))
        << "the size through the mount, once closed";
    const std::string got = backing_bytes(backing("fill"));
    EXPECT_EQ(first_difference(got, pattern.substr(0, got.size())), "")
        << "the backing file is not a prefix of what was written";

    // Space freed: writing works again, and its errors, if any, are its own.
    ASSERT_EQ(::unlink(mnt("fill").c_str()), 0) << errno_name(errno);
    const std::string again = pattern.substr(0, 3 << 20);
    Fd fd2(::open(mnt("again").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd2) << errno_name(errno);
    EXPECT_EQ(::write(fd2.get(), again.data(), again.size()), static_cast<ssize_t>(again.size()))
        << errno_name(errno);
    EXPECT_EQ(::fsync(fd2.get()), 0) << errno_name(errno);
    EXPECT_EQ(fd2.close(), success());
    EXPECT_EQ(first_difference(backing_bytes(backing("again")), again), "");
}

INSTANTIATE_TEST_SUITE_P(SmallLoopFilesystems, DbOptFullDisk,
                         ::testing::Combine(::testing::Values(std::string("ext4"), std::string("xfs")),
                                            ::testing::Values(Mode::strict, Mode::coalescing)),
                         [](const ::testing::TestParamInfo<FullDiskParam>& p) {
                             return std::get<0>(p.param) +
                                    (std::get<1>(p.param) == Mode::strict ? "Strict" : "Coalescing");
                         });

}  // namespace
}  // namespace diofs_test

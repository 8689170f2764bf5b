// The writeback window (-o dbopt,writeback=SIZE; docs/design.md): files open for writing go
// through the kernel's page cache, held to about SIZE for the mount, and what each writeback
// WRITE carried is dropped after it. What must hold:
// - a sequential writer of 4 KiB records has at most a few windows of the file in the page
//   cache at any time, and some (the window is really on), none after its close; the backing
//   file none; the bytes are the bytes written;
// - a file changed around the mount (in the backing directory, as another node of a shared
//   filesystem would) is seen whole by the next open through the mount and by a stat after the
//   attribute timeout, although the kernel keeps its own sizes under the writeback cache;
// - a full disk is told at the write() whose bytes may not fit, with nothing of it taken, and a
//   writer that frees room and tries the same write again loses nothing;
// - with a libfuse older than 3.16 (no HANDLE_KILLPRIV_V2) the option is refused in the log
//   and every write() stays a request: the same bytes, nothing cached.

#include "dbopt_support.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <vector>
#include <random>
#include <string>
#include <thread>

namespace diofs_test {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kWindow = 4 * kMiB;
constexpr const char* kWindowOn = "writeback: files open for writing go through the kernel's page cache";

class WritebackWindow : public DbOptTest {
protected:
    // Whether this build's daemon turned the window on (libfuse 3.16+); on an older one it says
    // why not, and the tests check that writes are requests as before.
    bool window_on() {
        const std::string log = wait_for_log(mount(), "writeback:");
#if DIOFS_LIBFUSE_MINOR >= 16
        EXPECT_NE(log.find(kWindowOn), std::string::npos) << log;
        return true;
#else
        EXPECT_NE(log.find("has no HANDLE_KILLPRIV_V2"), std::string::npos) << log;
        return false;
#endif
    }
};

TEST_F(WritebackWindow, SequentialRecordsStayInTheWindowAndAreKept) {
    DIOFS_MOUNT_ON(Backing::ext4_4k, {"dbopt", "writeback=4M"});
    const bool on = window_on();
    constexpr uint64_t kBytes = 64 * kMiB;
    constexpr size_t kRecord = 4096;
    const std::string data = random_bytes_from<std::mt19937_64>(kBytes, 7);
    Fd fd(::open(mnt("f").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    long most = 0;
    for (uint64_t at = 0; at < kBytes; at += kRecord) {
        ASSERT_EQ(::write(fd.get(), data.data() + at, kRecord), static_cast<ssize_t>(kRecord))
            << "at " << at << ": " << errno_name(errno);
        if ((at / kRecord) % 64 == 0)
            most = std::max(most, cachestat_pages(fd.get()));
    }
    // Dirty pages and those written back whose drop is on its way: a few windows at most.
    EXPECT_LE(most * 4096, static_cast<long>(4 * kWindow)) << "pages of the file in the page cache";
    if (on)
        EXPECT_GT(most, 0) << "no page was ever cached: the window is not on";
    else
        EXPECT_EQ(most, 0) << "pages cached without the window";
    ASSERT_EQ(fd.close(), success());
    // Before anything reads the backing file directly.
    EXPECT_EQ(resident_pages(backing("f")), 0) << "pages of the backing file cached";
    EXPECT_EQ(first_difference(read_whole(backing("f")), data), "") << "the backing file";
    Fd again(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(again) << errno_name(errno);
    EXPECT_EQ(first_difference(read_whole(mnt("f")), data), "") << "read back through the mount";
}

TEST_F(WritebackWindow, OddWritesAndRewritesAreKept) {
    DIOFS_MOUNT_ON(Backing::xfs_4k, {"dbopt", "writeback=4M"});
    window_on();
    // Records of 10,000 bytes (no page boundary in common with the writes), and the middle
    // rewritten by a second descriptor opened write-only: the kernel reads partial pages back
    // through whichever open file it has.
    std::string want = random_bytes_from<std::mt19937_64>(20 * kMiB + 1234, 3);
    Fd fd(::open(mnt("g").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    for (uint64_t at = 0; at < want.size(); at += 10000) {
        const size_t n = std::min<size_t>(10000, want.size() - at);
        ASSERT_EQ(::write(fd.get(), want.data() + at, n), static_cast<ssize_t>(n)) << errno_name(errno);
    }
    ASSERT_EQ(fd.close(), success());
    Fd other(::open(mnt("g").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(other) << errno_name(errno);
    const std::string patch = random_bytes_from<std::mt19937_64>(3 * kMiB + 7, 5);
    ASSERT_EQ(::pwrite(other.get(), patch.data(), patch.size(), 5 * kMiB + 3),
              static_cast<ssize_t>(patch.size()));
    want.replace(5 * kMiB + 3, patch.size(), patch);
    ASSERT_EQ(other.close(), success());
    EXPECT_EQ(resident_pages(backing("g")), 0) << "pages of the backing file cached";
    EXPECT_EQ(first_difference(read_whole(backing("g")), want), "") << "the backing file";
    EXPECT_EQ(first_difference(read_whole(mnt("g")), want), "") << "through the mount";
}

// A file written and closed through the mount, then changed in the backing directory: what a
// second node of a shared filesystem would do.
TEST_F(WritebackWindow, AChangeAroundTheMountIsSeenAtTheNextOpenAndStat) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=4M", "attr_timeout=0.2"});
    window_on();
    const std::string first = random_bytes_from<std::mt19937_64>(10000, 1);
    ASSERT_EQ(write_whole(mnt("h"), first), 0);
    struct stat st{};
    ASSERT_EQ(::stat(mnt("h").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 10000);

    const std::string grown = first + random_bytes_from<std::mt19937_64>(5000, 2);
    ASSERT_EQ(write_whole(backing("h"), grown), 0);
    EXPECT_EQ(first_difference(read_whole(mnt("h")), grown), "") << "the next open after a growth";
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_EQ(::stat(mnt("h").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 15000) << "a stat after the attribute timeout";

    const std::string shrunk = random_bytes_from<std::mt19937_64>(3000, 3);
    ASSERT_EQ(write_whole(backing("h"), shrunk), 0);
    EXPECT_EQ(first_difference(read_whole(mnt("h")), shrunk), "") << "the next open after a shrink";
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ASSERT_EQ(::stat(mnt("h").c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 3000);

    // Written through the mount again: the mount's own change is no change around it.
    const std::string mine = random_bytes_from<std::mt19937_64>(7000, 4);
    ASSERT_EQ(write_whole(mnt("h"), mine), 0);
    EXPECT_EQ(first_difference(read_whole(mnt("h")), mine), "");
    EXPECT_EQ(first_difference(read_whole(backing("h")), mine), "");
}

// Writers of one file, each through its own descriptor, then an open right after the last
// close. The kernel's writeback sends a page through whichever descriptor it picks, and writes
// its own times back (a SETATTR) while a WRITE may still follow: the open must find every byte
// on the backing file (none held back for a close that came earlier) and must not take the
// file for one changed around the mount (its open failed with ESTALE, 1 round in 10).
TEST_F(WritebackWindow, AnOpenRightAfterTheWritersCloseFindsEveryByte) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=4M"});
    window_on();
    for (int round = 0; round < 30; ++round) {
        const std::string name = "r" + std::to_string(round);
        std::vector<std::thread> writers;
        std::atomic<int> failures{0};
        for (int t = 0; t < 3; ++t) {
            writers.emplace_back([&, t] {
                Fd fd(::open(mnt(name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
                const std::string record = random_bytes_from<std::mt19937_64>(3000, 100 * round + t);
                for (int i = 0; fd && i < 100; ++i)
                    if (::write(fd.get(), record.data(), record.size()) !=
                        static_cast<ssize_t>(record.size()))
                        ++failures;
                if (!fd || !(fd.close() == success()))
                    ++failures;
            });
        }
        for (auto& w : writers)
            w.join();
        ASSERT_EQ(failures.load(), 0) << "round " << round;
        Fd reader(::open(mnt(name).c_str(), O_RDONLY | O_CLOEXEC));
        ASSERT_TRUE(reader) << "round " << round << ": " << errno_name(errno);
        std::string got(3 * 100 * 3000 + 1, '\0');
        const ssize_t n = ::read(reader.get(), got.data(), got.size());
        EXPECT_EQ(n, 3 * 100 * 3000) << "round " << round << ": " << errno_name(errno);
        EXPECT_EQ(read_whole(backing(name)).size(), 3u * 100 * 3000) << "round " << round;
    }
}

// The kernel writes the times of a written file back after its close, also when its name is
// gone by then: syncfs of the mount must not fail for it.
TEST_F(WritebackWindow, FilesRemovedAfterTheirWritesDoNotFailSyncfs) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=4M"});
    window_on();
    for (int i = 0; i < 3; ++i) {
        const std::string name = "gone" + std::to_string(i);
        ASSERT_EQ(write_whole(mnt(name), random_bytes_from<std::mt19937_64>(3 * kMiB, i)), 0);
        ASSERT_EQ(::unlink(mnt(name).c_str()), 0) << errno_name(errno);
    }
    Fd touched(::open(mnt("touched").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(touched);
    ASSERT_EQ(touched.close(), success());
    ASSERT_EQ(::unlink(mnt("touched").c_str()), 0);
    Fd root(::open(mnt().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(root);
    EXPECT_EQ(::syncfs(root.get()), 0) << errno_name(errno);
}

// The full-disk scenario: a writer of 4 KiB records on a filesystem that fills up gets
// ENOSPC from a write(), frees room, writes the same record again, and closes with 0; the file
// then holds every record it was told was written.
TEST_F(WritebackWindow, AFullDiskIsToldAtWriteAndNothingAcceptedIsLost) {
    DbOptTest::make_loop("ext4", 256 * kMiB);
    if (IsSkipped() || HasFatalFailure())
        return;
    const std::string b = loop_->path("backing"), r = loop_->path("ref");
    ASSERT_EQ(::mkdir(b.c_str(), 0755), 0);
    ASSERT_EQ(::mkdir(r.c_str(), 0755), 0);
    DIOFS_REQUIRE_FUSE();
    mount_ = std::make_unique<DiofsMount>(std::vector<std::string>{"dbopt", "writeback=4M"});
    mount_->use_directories(b, r);
    ASSERT_EQ(mount_->start(), "");
    window_on();
    // Most of the room taken by a filler, written beside the mount.
    struct statvfs vfs{};
    ASSERT_EQ(::statvfs(b.c_str(), &vfs), 0);
    const uint64_t free_bytes = vfs.f_bavail * vfs.f_frsize;
    ASSERT_GT(free_bytes, 96 * kMiB);
    {
        Fd filler(::open(loop_->path("filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        ASSERT_TRUE(filler);
        ASSERT_EQ(::fallocate(filler.get(), 0, 0, static_cast<off_t>(free_bytes - 48 * kMiB)), 0)
            << errno_name(errno);
    }
    constexpr size_t kRecord = 4096;
    constexpr uint64_t kBytes = 96 * kMiB;
    const std::string data = random_bytes_from<std::mt19937_64>(kBytes, 9);
    Fd fd(::open(mnt("log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    int refused = 0;
    uint64_t first_refusal = 0;
    for (uint64_t at = 0; at < kBytes;) {
        ssize_t n = ::write(fd.get(), data.data() + at, kRecord);
        if (n < 0 && errno == ENOSPC && refused < 3) {
            if (refused++ == 0)
                first_refusal = at;
            // The operator frees room; the writer tries the same record again.
            ASSERT_EQ(::unlink(loop_->path("filler").c_str()), 0) << errno_name(errno);
            continue;
        }
        ASSERT_EQ(n, static_cast<ssize_t>(kRecord)) << "at " << at << ": " << errno_name(errno);
        at += kRecord;
    }
    EXPECT_EQ(refused, 1) << "ENOSPC told by write(): first at byte " << first_refusal;
    EXPECT_EQ(::fsync(fd.get()), 0) << errno_name(errno);
    EXPECT_EQ(fd.close(), success());
    EXPECT_EQ(first_difference(read_whole(b + "/log"), data), "") << "the backing file";
}

// Opens that are not plain writers share the kernel's one page cache of the inode with one that
// is: an O_SYNC and an O_DIRECT descriptor read the hole before a dirty page as zeros and the
// dirty bytes as written (not the backing file's), their writes are not undone by the later
// writeback of older dirty pages, and an O_SYNC write is in the backing file when it returns.
TEST_F(WritebackWindow, SynchronousOpensSeeAndKeepTheWindowsBytes) {
    DIOFS_MOUNT_ON(Backing::xfs_4k, {"dbopt", "writeback=8M"});
    window_on();
    Fd writer(::open(mnt("f").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(writer) << errno_name(errno);
    std::string want = random_bytes_from<std::mt19937_64>(1 * kMiB + 100, 11);
    ASSERT_EQ(::pwrite(writer.get(), want.data(), want.size(), 0), static_cast<ssize_t>(want.size()));
    ASSERT_EQ(::fsync(writer.get()), 0);
    // Opened before the writer dirties pages (an open writes back what is dirty).
    const int kFlags[] = {O_RDWR | O_SYNC, O_RDWR | O_DSYNC, O_RDONLY | O_DIRECT};
    std::vector<Fd> others;
    for (int flags : kFlags) {
        others.emplace_back(::open(mnt("f").c_str(), flags | O_CLOEXEC));
        ASSERT_TRUE(others.back()) << errno_name(errno);
    }
    for (size_t i = 0; i < others.size(); ++i) {
        const int flags = kFlags[i];
        const int other = others[i].get();
        SCOPED_TRACE("flags 0" + std::to_string(flags));
        // Dirty bytes in the middle and past the end (a hole before them): in the page cache,
        // not yet in the backing file.
        const std::string middle(5000, static_cast<char>('a' + i)), tail(90, static_cast<char>('k' + i));
        const uint64_t tail_at = (3 + i) * kMiB + 17;
        ASSERT_EQ(::pwrite(writer.get(), middle.data(), middle.size(), 4093), 5000);
        ASSERT_EQ(::pwrite(writer.get(), tail.data(), tail.size(), static_cast<off_t>(tail_at)), 90);
        want.replace(4093, middle.size(), middle);
        want.resize(tail_at, '\0');
        want += tail;
        struct stat st{};
        ASSERT_EQ(::fstat(other, &st), 0);
        EXPECT_EQ(st.st_size, static_cast<off_t>(want.size()));
        if (flags & O_DIRECT) {
            // Whole aligned blocks: the dirty bytes, and the hole before the tail.
            void* mem = nullptr;
            ASSERT_EQ(::posix_memalign(&mem, 4096, 16384), 0);
            std::unique_ptr<void, decltype(&::free)> owned(mem, &::free);
            const auto bytes = static_cast<char*>(mem);
            ASSERT_EQ(::pread(other, mem, 16384, 0), 16384) << errno_name(errno);
            EXPECT_EQ(first_difference(std::string(bytes, 16384), want.substr(0, 16384)), "")
                << "the dirty bytes read with O_DIRECT";
            const off_t in_hole = static_cast<off_t>((tail_at - 20000) / 4096 * 4096);
            ASSERT_EQ(::pread(other, mem, 16384, in_hole), 16384) << errno_name(errno);
            EXPECT_EQ(std::string(bytes, 16384), std::string(16384, '\0')) << "the hole, with O_DIRECT";
            continue;
        }
        // Inside the hole, short of the dirty tail: zeros, not the end of the backing file.
        std::string hole(4000, '?');
        ASSERT_EQ(::pread(other, hole.data(), hole.size(), static_cast<off_t>(tail_at - 5000)), 4000)
            << "a read in the hole before a dirty page";
        EXPECT_EQ(hole, std::string(4000, '\0'));
        std::string got(want.size() + 10, '?');
        ASSERT_EQ(::pread(other, got.data(), got.size(), 0), static_cast<ssize_t>(want.size()))
            << errno_name(errno);
        got.resize(want.size());
        EXPECT_EQ(first_difference(got, want), "") << "read through the synchronous descriptor";
        // A synchronous write over dirty bytes: in the backing file when it returns, and not
        // undone by the writeback of what the writer left dirty.
        ASSERT_EQ(::pwrite(writer.get(), middle.data(), 3000, 6000), 3000);
        const std::string sync_bytes(3000, static_cast<char>('0' + i));
        ASSERT_EQ(::pwrite(other, sync_bytes.data(), sync_bytes.size(), 6000), 3000);
        want.replace(6000, sync_bytes.size(), sync_bytes);
        const auto backing_now = read_direct(backing("f"));
        ASSERT_TRUE(backing_now);
        EXPECT_EQ(backing_now->substr(6000, 3000), sync_bytes) << "the O_SYNC write when it returned";
    }
    others.clear();
    ASSERT_EQ(writer.close(), success());
    EXPECT_EQ(first_difference(read_whole(backing("f")), want), "") << "the backing file";
    EXPECT_EQ(first_difference(read_whole(mnt("f")), want), "") << "through the mount";
    EXPECT_EQ(resident_pages(backing("f")), 0) << "pages of the backing file cached";
}

// The other order: a synchronous writer has the file first, and keeps its request per write();
// a plain writer opened beside it writes direct too (nothing of the file cached), and the
// bytes of both are kept.
TEST_F(WritebackWindow, APlainWriterBesideASynchronousOneWritesDirect) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=8M"});
    window_on();
    Fd sync(::open(mnt("s").c_str(), O_RDWR | O_CREAT | O_DSYNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(sync) << errno_name(errno);
    Fd plain(::open(mnt("s").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(plain) << errno_name(errno);
    std::string want = random_bytes_from<std::mt19937_64>(300000, 17);
    ASSERT_EQ(::pwrite(plain.get(), want.data(), want.size(), 0), static_cast<ssize_t>(want.size()));
    EXPECT_EQ(cachestat_pages(plain.get()), 0) << "pages cached beside a synchronous writer";
    const std::string sync_bytes(7000, 's');
    ASSERT_EQ(::pwrite(sync.get(), sync_bytes.data(), sync_bytes.size(), 100000), 7000);
    want.replace(100000, sync_bytes.size(), sync_bytes);
    std::string got(want.size(), '?');
    ASSERT_EQ(::pread(sync.get(), got.data(), got.size(), 0), static_cast<ssize_t>(want.size()));
    EXPECT_EQ(first_difference(got, want), "") << "read through the synchronous descriptor";
    ASSERT_EQ(plain.close(), success());
    ASSERT_EQ(sync.close(), success());
    EXPECT_EQ(first_difference(read_whole(backing("s")), want), "") << "the backing file";
}

// writebehind=0 promises every write() on the backing file when it returns: the window is not
// turned on (the log says why), and the promise holds.
TEST_F(WritebackWindow, WithoutCoalescingEveryWriteIsOnTheBackingFileWhenItReturns) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=8M", "writebehind=0"});
    const std::string log = wait_for_log(mount(), "writeback:");
    EXPECT_NE(log.find("writebehind=0 puts every write() on the backing file"), std::string::npos)
        << log;
    Fd fd(::open(mnt("n").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    const std::string record(5000, 'n');
    for (int i = 1; i <= 50; ++i) {
        ASSERT_EQ(::write(fd.get(), record.data(), record.size()), 5000);
        struct stat st{};
        ASSERT_EQ(::stat(backing("n").c_str(), &st), 0);
        ASSERT_EQ(st.st_size, 5000 * i) << "the backing file after write " << i;
    }
    EXPECT_EQ(cachestat_pages(fd.get()), 0) << "pages of the file cached";
    EXPECT_EQ(fd.close(), success());
}

// SEEK_DATA and SEEK_HOLE of a file whose only data is in the kernel's dirty pages: the data is
// found (the kernel answers them itself under the window: all of a file is data), as cp
// --sparse and tar --sparse ask.
TEST_F(WritebackWindow, SeekDataFindsBytesNotYetWrittenBack) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=8M"});
    window_on();
    Fd fd(::open(mnt("s").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << errno_name(errno);
    const std::string data(5000, 'd');
    ASSERT_EQ(::pwrite(fd.get(), data.data(), data.size(), 1 << 20), 5000);
    const off_t at = ::lseek(fd.get(), 0, SEEK_DATA);
    EXPECT_GE(at, 0) << "SEEK_DATA found no data: " << errno_name(errno);
    EXPECT_LE(at, 1 << 20);
    const off_t hole = ::lseek(fd.get(), at < 0 ? 0 : at, SEEK_HOLE);
    EXPECT_EQ(hole, (1 << 20) + 5000) << "SEEK_HOLE: " << errno_name(errno);
    EXPECT_EQ(fd.close(), success());
}

// A caller who may write a file and not read it writes through the window (the kernel reads
// the partial pages it writes into through the daemon's own descriptor), and still reads nothing.
TEST_F(WritebackWindow, AWriteOnlyCallerWritesAndReadsNothing) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=8M"});
    window_on();
    const std::string base = random_bytes_from<std::mt19937_64>(200000, 13);
    ASSERT_EQ(write_whole(backing("w"), base), 0) << errno_name(errno);
    ASSERT_EQ(::chown(backing("w").c_str(), kNobody, kNobody), 0);
    ASSERT_EQ(::chmod(backing("w").c_str(), 0200), 0);
    const std::string patch(10001, 'p');
    const std::string path = mnt("w");
    const int status = as_nobody([&] {
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return 1;
        if (::pwrite(fd, patch.data(), patch.size(), 4097) != static_cast<ssize_t>(patch.size()))
            return 2;
        char c;
        if (::pread(fd, &c, 1, 0) != -1 || errno != EBADF)
            return 3;
        if (::open(path.c_str(), O_RDONLY | O_CLOEXEC) != -1 || errno != EACCES)
            return 4;
        return ::close(fd) == 0 ? 0 : 5;
    });
    EXPECT_EQ(status, 0) << "1: open, 2: write, 3: read through it, 4: a readable open, 5: close";
    std::string want = base;
    want.replace(4097, patch.size(), patch);
    EXPECT_EQ(first_difference(read_whole(backing("w")), want), "") << "the backing file";
}

}  // namespace
}  // namespace diofs_test

// The kernel's page cache on the mount's side (a dbopt mount that is not strict, cache_window
// above 0): files opened for reading are not FOPEN_DIRECT_IO, the kernel caches a window of
// them, and the daemon drops it behind the reader and at close (kernel_pages.hpp).
//
// What must hold:
// - a reader never sees stale bytes once a write through another descriptor has returned,
//   including after a truncate, an O_TRUNC open and a read-only shared mapping;
// - while a long sequential read runs, the mount's file has at most cache_window bytes in the
//   page cache, and none once the reader closed it; the backing file none at all;
// - strict and cache_window=0 keep the mount's files out of the page cache entirely.
// The residency of the mount's file is measured with cachestat(2) on a descriptor opened before
// the step: opening a file of the mount drops its pages (the kernel does so at every open that
// does not keep the cache), so a descriptor opened afterwards would always see none.

#include "dbopt_support.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

namespace diofs_test {
namespace {

constexpr long kWindowPages = (1 << 20) / 4096;  // the default cache_window, in 4 KiB pages

std::string random_bytes(size_t n, uint64_t seed) {
    return random_bytes_from<std::mt19937_64>(n, seed);
}

// Polls `fd`'s pages in the page cache until there are none, for up to 5 s (the daemon drops
// them on a thread of its own, just after the close). The last count.
long wait_for_no_pages(int fd) {
    long pages = cachestat_pages(fd);
    for (int i = 0; i < 500 && pages > 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        pages = cachestat_pages(fd);
    }
    return pages;
}

class KernelCache : public DbOptTest, public ::testing::WithParamInterface<Backing> {
protected:
    void SetUp() override {
        Fd self(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
        if (cachestat_pages(self.get()) < 0)
            GTEST_SKIP() << "no cachestat(2) here: " << errno_name(errno);
    }

    // A file of `size` random bytes written into the backing directory (not through the mount).
    std::string make_file(const std::string& name, size_t size, uint64_t seed) {
        std::string data = random_bytes(size, seed);
        EXPECT_EQ(write_whole(backing(name), data), 0) << errno_name(errno);
        return data;
    }
};

// A reader that keeps its descriptor open re-reads what another descriptor just wrote: every
// pwrite is seen by the next pread, at unaligned offsets, and the reader's pages were cached
// before each write (so the check is of the kernel's cache, not of a cold read).
TEST_P(KernelCache, ReaderSeesEveryReturnedWriteOfAnotherDescriptor) {
    DIOFS_MOUNT_ON(GetParam());
    constexpr size_t kSize = 4 << 20;
    std::string want = make_file("f", kSize, 1);
    const std::string pool = random_bytes(200000, 2);
    Fd reader(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
    Fd writer(::open(mnt("f").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(reader && writer) << errno_name(errno);
    std::mt19937_64 rng(3);
    std::string got(70000, '\0');
    long cached_before_writes = 0;
    for (int i = 0; i < 300; ++i) {
        const size_t len = std::uniform_int_distribution<size_t>(1, i % 7 == 0 ? 65536 : 5000)(rng);
        const off_t off = std::uniform_int_distribution<off_t>(0, kSize - 70000)(rng);
        // The pages of the range in the reader's cache first.
        ASSERT_EQ(::pread(reader.get(), got.data(), len, off), static_cast<ssize_t>(len));
        cached_before_writes += cachestat_pages(reader.get(), static_cast<uint64_t>(off), len);
        const size_t from = std::uniform_int_distribution<size_t>(0, 100000)(rng);
        ASSERT_EQ(::pwrite(writer.get(), pool.data() + from, len, off), static_cast<ssize_t>(len))
            << errno_name(errno);
        want.replace(static_cast<size_t>(off), len, pool, from, len);
        ASSERT_EQ(::pread(reader.get(), got.data(), len + 100, off), static_cast<ssize_t>(len + 100));
        ASSERT_EQ(first_difference(got.substr(0, len + 100), want.substr(static_cast<size_t>(off), len + 100)), "")
            << "write " << i << " at " << off << " length " << len
            << ": the reader sees bytes the write replaced";
    }
    EXPECT_GT(cached_before_writes, 0)
        << "the reader's pages were never in the kernel's cache: the test checked nothing";
    EXPECT_EQ(writer.close(), success());
    EXPECT_EQ(first_difference(read_whole(mnt("f")), want), "");
    EXPECT_EQ(first_difference(read_whole(backing("f")), want), "");
}

// The same with the writer and the reader on two threads at once: the writer stores a counter
// in one 8-byte slot, over and over, and publishes each value once its pwrite returned; the
// reader never reads a value older than the one published before its pread started.
TEST_P(KernelCache, ConcurrentReaderNeverSeesAnOlderValueThanReturned) {
    DIOFS_MOUNT_ON(GetParam());
    make_file("slot", 64 << 10, 4);
    Fd reader(::open(mnt("slot").c_str(), O_RDONLY | O_CLOEXEC));
    Fd writer(::open(mnt("slot").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(reader && writer) << errno_name(errno);
    constexpr off_t kSlot = 12345;  // inside a page, across no boundary
    uint64_t zero = 0;
    ASSERT_EQ(::pwrite(writer.get(), &zero, sizeof zero, kSlot), 8);
    std::atomic<uint64_t> published = 0;
    std::atomic<bool> done = false;
    std::thread writing([&] {
        for (uint64_t v = 1; v <= 3000; ++v) {
            if (::pwrite(writer.get(), &v, sizeof v, kSlot) != 8)
                break;
            published.store(v);
        }
        done.store(true);
    });
    uint64_t reads = 0, stale = 0, first_stale_seen = 0, first_stale_want = 0;
    while (!done.load()) {
        const uint64_t at_least = published.load();
        uint64_t seen = 0;
        if (::pread(reader.get(), &seen, sizeof seen, kSlot) != 8)
            break;
        ++reads;
        if (seen < at_least && stale++ == 0) {
            first_stale_seen = seen;
            first_stale_want = at_least;
        }
    }
    writing.join();
    EXPECT_EQ(published.load(), 3000u) << "the writer stopped: " << errno_name(errno);
    EXPECT_GT(reads, 0u);
    EXPECT_EQ(stale, 0u) << "of " << reads << " reads, " << stale << " saw an older value than "
                         << "a write that had returned; the first saw " << first_stale_seen
                         << " after " << first_stale_want << " was written";
}

// A truncate, a truncate that grows the file, and an open with O_TRUNC, each while the reader
// holds cached pages of what they cut: the reader sees the new end, zeros and then nothing.
TEST_P(KernelCache, TruncateAndOTruncWhileTheReaderHoldsPages) {
    DIOFS_MOUNT_ON(GetParam());
    const std::string data = make_file("t", 1 << 20, 5);
    Fd reader(::open(mnt("t").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(reader) << errno_name(errno);
    std::string got(1 << 20, '\0');
    ASSERT_EQ(::pread(reader.get(), got.data(), 1 << 20, 0), 1 << 20);
    EXPECT_EQ(got, data);
    // The range the truncates cut, cached (the window kept only the end of that long read).
    ASSERT_EQ(::pread(reader.get(), got.data(), 150000, 450000), 150000);
    ASSERT_GT(cachestat_pages(reader.get(), 500000, 100000), 0)
        << "the reader's pages are not in the kernel's cache: the test would check nothing";

    // Cut inside a page, through another descriptor.
    {
        Fd writer(::open(mnt("t").c_str(), O_WRONLY | O_CLOEXEC));
        ASSERT_TRUE(writer) << errno_name(errno);
        ASSERT_EQ(::ftruncate(writer.get(), 500001), 0) << errno_name(errno);
        EXPECT_EQ(writer.close(), success());
    }
    EXPECT_EQ(::pread(reader.get(), got.data(), 100000, 450000), 50001);
    EXPECT_EQ(first_difference(got.substr(0, 50001), data.substr(450000, 50001)), "");
    // Grown again by path: what lies past the old end reads as zeros, not as the old bytes.
    ASSERT_EQ(::truncate(mnt("t").c_str(), 700000), 0) << errno_name(errno);
    ASSERT_EQ(::pread(reader.get(), got.data(), 200000, 500000), 200000);
    EXPECT_EQ(got.substr(0, 1), data.substr(500000, 1));
    EXPECT_EQ(got.substr(1, 199999), std::string(199999, '\0'))
        << "the bytes past the truncated end came back after the file grew";

    ASSERT_EQ(::pread(reader.get(), got.data(), 4096, 0), 4096);
    ASSERT_GT(cachestat_pages(reader.get(), 0, 4096), 0);
    {
        Fd truncating(::open(mnt("t").c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
        ASSERT_TRUE(truncating) << errno_name(errno);
        EXPECT_EQ(::pread(reader.get(), got.data(), 4096, 0), 0)
            << "the reader still reads bytes of a file cut by O_TRUNC";
        ASSERT_EQ(::pwrite(truncating.get(), "new", 3, 0), 3);
        EXPECT_EQ(truncating.close(), success());
    }
    ASSERT_EQ(::pread(reader.get(), got.data(), 4096, 0), 3);
    EXPECT_EQ(got.substr(0, 3), "new");
}

// A read-only shared mapping works (the file is not FOPEN_DIRECT_IO) and follows a write
// through another descriptor.
TEST_P(KernelCache, ReadOnlySharedMappingFollowsWrites) {
    DIOFS_MOUNT_ON(GetParam());
    std::string want = make_file("m", 256 << 10, 6);
    Fd reader(::open(mnt("m").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(reader) << errno_name(errno);
    void* map = ::mmap(nullptr, want.size(), PROT_READ, MAP_SHARED, reader.get(), 0);
    ASSERT_NE(map, MAP_FAILED) << "mmap MAP_SHARED of a file opened for reading: "
                               << errno_name(errno);
    const char* bytes = static_cast<const char*>(map);
    EXPECT_EQ(first_difference(std::string(bytes, want.size()), want), "");
    Fd writer(::open(mnt("m").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(writer) << errno_name(errno);
    ASSERT_EQ(::pwrite(writer.get(), "changed", 7, 70001), 7);
    want.replace(70001, 7, "changed");
    EXPECT_EQ(std::string(bytes + 70001, 7), "changed")
        << "the shared mapping shows the bytes a write replaced";
    EXPECT_EQ(first_difference(std::string(bytes, want.size()), want), "");
    ::munmap(map, want.size());
}

// The bound: during a 64 MiB sequential read with 4 KiB reads, the mount's file never has more
// than the window in the page cache, and has none once the reader closed it; the backing file
// never has any. The reader's pages were cached at some point (the mode is in effect).
TEST_P(KernelCache, LongSequentialReadKeepsTheWindowAndLeavesNothing) {
    DIOFS_MOUNT_ON(GetParam());
    constexpr size_t kSize = 64 << 20;
    const std::string data = make_file("long", kSize, 7);
    ::posix_fadvise(Fd(::open(backing("long").c_str(), O_RDONLY)).get(), 0, 0, POSIX_FADV_DONTNEED);
    Fd measure(::open(mnt("long").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(measure) << errno_name(errno);
    for (size_t buffer : {size_t{4096}, size_t{16384}}) {
        SCOPED_TRACE(std::to_string(buffer) + "-byte reads");
        std::atomic<bool> done = false;
        std::string error;
        std::thread reading([&] {
            Fd in(::open(mnt("long").c_str(), O_RDONLY | O_CLOEXEC));
            std::string buf(buffer, '\0');
            size_t total = 0;
            bool same = true;
            while (in) {
                ssize_t n = ::read(in.get(), buf.data(), buffer);
                if (n <= 0)
                    break;
                same = same && std::memcmp(buf.data(), data.data() + total, static_cast<size_t>(n)) == 0;
                total += static_cast<size_t>(n);
            }
            if (!in || total != kSize || !same)
                error = "read " + std::to_string(total) + " bytes" + (same ? "" : ", not the file's");
            done.store(true);
        });
        long peak = 0, samples = 0;
        while (!done.load()) {
            peak = std::max(peak, cachestat_pages(measure.get()));
            ++samples;
        }
        reading.join();
        EXPECT_EQ(error, "");
        std::cout << "[ diofs    ] " << buffer << "-byte reads: at most " << peak
                  << " pages of the mount's file cached in " << samples << " samples" << std::endl;
        EXPECT_GT(peak, 0) << "no page was ever cached: the kernel's cache is not in use";
        EXPECT_LE(peak, kWindowPages) << "the mount's file held more than cache_window";
        EXPECT_EQ(wait_for_no_pages(measure.get()), 0) << "pages left after the reader closed";
        long total = 0;
        EXPECT_EQ(resident_pages(backing("long"), &total), 0) << "of " << total;
    }
}

// What a sequential read costs the daemon: READ requests of the kernel's read-ahead, nothing
// else per request. Each drop of the window marks the file's attributes stale, and with the
// kernel's auto_inval_data every read() after it would first send a GETATTR (about one per READ),
// so it is off under dbopt. Counted in libfuse's debug log. The kernel reads ahead an eighth of
// cache_window at a time (128 KiB by default, at most 1 MiB), set on the mount's bdi.
class KernelCacheRequests : public DbOptTest {
protected:
    struct Requests {
        size_t reads = 0, getattrs = 0;
    };
    // Reads the file `name` of `size` bytes through the mount, 4 KiB at a time, and counts
    // the requests the daemon was sent meanwhile.
    Requests read_counting(const std::string& name, size_t size) {
        const size_t before = mount().log().size();
        {
            Fd in(::open(mnt(name).c_str(), O_RDONLY | O_CLOEXEC));
            EXPECT_TRUE(in) << errno_name(errno);
            std::string buf(4096, '\0');
            size_t total = 0;
            for (ssize_t n; in && (n = ::read(in.get(), buf.data(), buf.size())) > 0;)
                total += static_cast<size_t>(n);
            EXPECT_EQ(total, size);
        }
        const std::string log = mount().log().substr(before);
        auto count = [&](const std::string& needle) {
            size_t n = 0;
            for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1))
                ++n;
            return n;
        };
        Requests r{count("opcode: READ "), count("opcode: GETATTR ")};
        std::cout << "[ diofs    ] " << r.reads << " READ and " << r.getattrs
                  << " GETATTR requests" << std::endl;
        return r;
    }
    // The kernel's read-ahead of the mount's files, KiB (its bdi's read_ahead_kb).
    long read_ahead_kb() {
        struct stat st;
        if (::stat(mnt().c_str(), &st) != 0)
            return -1;
        std::ifstream in("/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                         std::to_string(minor(st.st_dev)) + "/read_ahead_kb");
        long kb = -1;
        in >> kb;
        return kb;
    }
};

TEST_F(KernelCacheRequests, ASequentialReadSendsOnlyReads) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "debug"});
    constexpr size_t kSize = 16 << 20;
    ASSERT_EQ(write_whole(backing("f"), random_bytes(kSize, 9)), 0) << errno_name(errno);
    EXPECT_EQ(read_ahead_kb(), 128);
    const Requests r = read_counting("f", kSize);
    EXPECT_GE(r.reads, kSize / (128 << 10)) << "fewer READ requests than 128 KiB windows";
    EXPECT_LE(r.getattrs, 4u) << "a GETATTR for (almost) every READ";
}

// A wider window (8 MiB): the kernel reads ahead 1 MiB at a time, so a sequential read takes an
// eighth of the requests, and the file still has at most the window cached.
TEST_F(KernelCacheRequests, AWiderWindowReadsAheadAnEighthOfIt) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "debug", "cache_window=8M"});
    constexpr size_t kSize = 16 << 20;
    ASSERT_EQ(write_whole(backing("f"), random_bytes(kSize, 10)), 0) << errno_name(errno);
    EXPECT_EQ(read_ahead_kb(), 1024);
    const Requests r = read_counting("f", kSize);
    EXPECT_GE(r.reads, kSize >> 20);
    EXPECT_LE(r.reads, 2 * (kSize >> 20)) << "READ requests of less than 512 KiB";
    EXPECT_LE(r.getattrs, 4u);
}

INSTANTIATE_TEST_SUITE_P(Backings, KernelCache, ::testing::Values(Backing::plain, Backing::xfs_4k),
                         [](const auto& p) {
                             return std::string(p.param == Backing::plain ? "PlainDir" : "XfsOn4K");
                         });

// strict and cache_window=0: the mount's files are FOPEN_DIRECT_IO, nothing of them is cached
// while they are read.
class NoKernelCache : public DbOptTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(NoKernelCache, NothingOfTheMountsFilesIsCached) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", GetParam()});
    const std::string data = random_bytes(4 << 20, 8);
    ASSERT_EQ(write_whole(backing("f"), data), 0) << errno_name(errno);
    Fd in(::open(mnt("f").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(in) << errno_name(errno);
    std::string got(data.size(), '\0');
    long peak = 0;
    for (size_t off = 0; off < data.size(); off += 4096) {
        ASSERT_EQ(::pread(in.get(), got.data() + off, 4096, static_cast<off_t>(off)), 4096);
        peak = std::max(peak, cachestat_pages(in.get()));
    }
    EXPECT_EQ(got, data);
    EXPECT_EQ(peak, 0) << "a page of a FOPEN_DIRECT_IO file was cached";
}

INSTANTIATE_TEST_SUITE_P(Options, NoKernelCache, ::testing::Values("strict", "cache_window=0"),
                         [](const auto& p) {
                             return std::string(p.param[0] == 's' ? "Strict" : "CacheWindowZero");
                         });

}  // namespace
}  // namespace diofs_test

// The point of dbopt: no page of a file read or written through the mount stays in the page
// cache. The seed's experiment, scaled down: a 64 MiB redo-log-like file (made by
// shared/tools/mkredo.py when it is there) is copied inside the mount with cp (copy_file_range),
// with read/write loops (128 KiB and odd 10,000-byte buffers), then gzip -k'd; after each step
// mincore(2) on the BACKING files must count zero resident pages. Reading a file through the
// mount, starting cold, must leave it non-resident too.
//
// The control runs the same steps on a mount without dbopt and expects most pages resident:
// the check is able to fail. The "warm" cases start from a backing file whose pages are already
// cached (written by another program just before): the pages that a dbopt write touches, or a
// dbopt read reads, must not stay resident either. The ramfs case covers a filesystem that refuses O_DIRECT: the mount
// works, the bytes are right and the daemon warns exactly once (ramfs pages can never be
// dropped, so residency is not checked there).
//
// Each dbopt case runs under `-o dbopt,strict` (every write on the device when it returns) and
// with the default options (read-ahead and write coalescing, whose buffers are the daemon's own
// memory, not the page cache): the promise is the same. With coalescing, a pending write has
// not touched the backing file yet, so pages warmed outside the mount are judged once the
// writes are out (after fsync, or close).
//
// These tests drop the system's caches, so they run alone (RUN_SERIAL, see CMakeLists.txt).

#include "dbopt_support.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <random>
#include <tuple>

#ifndef DIOFS_SOURCE_DIR
#error "DIOFS_SOURCE_DIR (the top of the repository) must be defined by the build"
#endif

namespace diofs_test {
namespace {

constexpr uint64_t kInputBytes = 64u << 20;

// The deterministic input: mkredo.py from ../shared/tools beside the repository when it is
// there (and python3 with it), else pseudo-random log-like text made here.
std::string make_input(const std::string& path) {
    const std::string tool = std::string(DIOFS_SOURCE_DIR) + "/../shared/tools/mkredo.py";
    if (::access(tool.c_str(), R_OK) == 0) {
        std::string out;
        int status = run_command({"python3", tool, path, std::to_string(kInputBytes)}, &out);
        struct stat st{};
        if (status == 0 && ::stat(path.c_str(), &st) == 0 &&
            static_cast<uint64_t>(st.st_size) == kInputBytes)
            return "mkredo.py";
        std::cerr << "[ diofs    ] " << tool << " did not work (status " << status << "): " << out
                  << "; generating the input here\n";
    }
    std::mt19937_64 rng(1);
    static const char* const kWords[] = {"INSERT", "UPDATE", "DELETE", "COMMIT", "ROLLBACK",
                                         "redo",   "scn",    "xid",    "block",  "undo"};
    std::string data;
    data.reserve(kInputBytes + 256);
    while (data.size() < kInputBytes) {
        data += "scn=" + std::to_string(data.size() * 7 + rng() % 1000) + " ";
        for (int w = 0, n = static_cast<int>(rng() % 8) + 2; w < n; ++w) {
            data += kWords[rng() % 10];
            data += ' ';
        }
        for (int i = 0, n = static_cast<int>(rng() % 40); i < n; ++i)
            data += "0123456789abcdef"[rng() % 16];
        data += '\n';
    }
    data.resize(kInputBytes);
    if (write_whole(path, data) != 0)
        return "";
    return "generated here";
}

// Drops the page cache: the system's (as root) and, in any case, the clean pages of `path`.
void drop_caches(const std::string& path) {
    ::sync();
    {
        std::ofstream drop("/proc/sys/vm/drop_caches");
        if (drop)
            drop << "3\n";
    }
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd) {
        ::fdatasync(fd.get());
        ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
    }
}

// Copies `from` to `to` with read(2) and write(2) through a `buffer`-byte buffer.
std::string copy_with_read_write(const std::string& from, const std::string& to, size_t buffer) {
    Fd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
    Fd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!in || !out)
        return "open: " + errno_name(errno);
    std::string buf(buffer, '\0');
    while (true) {
        ssize_t n = ::read(in.get(), buf.data(), buffer);
        if (n < 0)
            return "read: " + errno_name(errno);
        if (n == 0)
            break;
        ssize_t w = ::write(out.get(), buf.data(), static_cast<size_t>(n));
        if (w != n)
            return "write returned " + std::to_string(w) + ": " + errno_name(errno);
    }
    Outcome closed = out.close();
    if (!closed.ok())
        return "close: " + errno_name(closed.err);
    return "";
}

// Reads `path` to its end through a `buffer`-byte buffer; the byte count, or -1.
long long read_through(const std::string& path, size_t buffer) {
    Fd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in)
        return -1;
    std::string buf(buffer, '\0');
    long long total = 0;
    while (true) {
        ssize_t n = ::read(in.get(), buf.data(), buffer);
        if (n < 0)
            return -1;
        if (n == 0)
            return total;
        total += n;
    }
}

// What a check expects of the backing files after a step.
enum class Expect {
    nothing_resident,  // dbopt: no page at all
    mostly_resident,   // the control without dbopt: more than half of the pages
};

class DbOptPageCache : public DbOptTest {
protected:
    // "" when the backing file `name` is as `expect`ed after `step`, else why not. The count
    // is recorded in report_ either way.
    std::string resident(const std::string& name, const std::string& step, Expect expect) {
        std::string why;
        long pages = 0;
        const long r = resident_pages(backing(name), &pages, &why);
        report_ += "  after " + step + ": " + name + " " + std::to_string(r) + " of " +
                   std::to_string(pages) + " pages resident\n";
        if (r < 0)
            return why;
        std::ostringstream s;
        if (expect == Expect::nothing_resident && r != 0)
            s << "backing file " << name << " has " << r << " of " << pages
              << " pages in the page cache after " << step << " through the dbopt mount";
        if (expect == Expect::mostly_resident && r <= pages / 2)
            s << "without dbopt, backing file " << name << " should be mostly resident after "
              << step << ", and only " << r << " of " << pages << " pages are: the residency "
              << "check would not see a leak";
        return s.str();
    }

    // Runs `step` from a cold cache and checks the backing files `names`. Other programs on
    // the machine may drop the caches meanwhile (other tests do): that can only take pages
    // away, so a resident page under dbopt is a failure whatever happened, but a clean result
    // counts only when no outside drop happened during the step (/proc/vmstat drop_pagecache
    // did not move), and a control short of pages after an outside drop tries again.
    void step(const std::string& what, const std::function<std::string()>& run,
              std::vector<std::string> names, Expect expect) {
        // A dbopt step is slower (and cannot fail for lack of pages): fewer tries.
        const int tries = expect == Expect::nothing_resident ? 3 : 6;
        std::vector<std::string> problems;
        bool interfered = false;
        for (int attempt = 1; attempt <= tries; ++attempt) {
            drop_caches(backing("redo.log"));
            const long drops_before = outside_drops();
            const std::string error = run();
            ASSERT_EQ(error, "") << what;
            problems.clear();
            for (const auto& n : names) {
                std::string p = resident(n, what, expect);
                if (!p.empty())
                    problems.push_back(p);
            }
            interfered = outside_drops() != drops_before;
            if (expect == Expect::nothing_resident && !problems.empty())
                break;  // a real failure: pages were left, outside drops or not
            if (!interfered)
                break;
            report_ += "  (again: the caches were dropped from outside during the step)\n";
        }
        if (interfered && problems.empty())
            std::cout << "[ diofs    ] note: every try of \"" << what
                      << "\" saw an outside drop of the caches; its clean result is weaker"
                      << std::endl;
        if (interfered && expect == Expect::mostly_resident && !problems.empty()) {
            std::cout << "[ diofs    ] note: the control of \"" << what << "\" is inconclusive: "
                      << "the caches were dropped from outside in every try" << std::endl;
            return;
        }
        for (const auto& p : problems)
            ADD_FAILURE() << p;
    }

    // How many times the page cache was dropped, system-wide (-1 when the kernel does not say).
    static long outside_drops() {
        std::ifstream in("/proc/vmstat");
        std::string key;
        long value = 0;
        while (in >> key >> value) {
            if (key == "drop_pagecache")
                return value;
        }
        return -1;
    }

    // The seed's steps, through the mount, each checked as `expect`ed.
    void copy_and_gzip(Expect expect) {
        const std::string source = make_input(backing("redo.log"));
        ASSERT_NE(source, "") << "cannot make the 64 MiB input";
        drop_caches(backing("redo.log"));
        long pages = 0;
        std::string why;
        ASSERT_EQ(resident_pages(backing("redo.log"), &pages, &why), 0)
            << "the input did not start cold " << why;
        ASSERT_EQ(pages, static_cast<long>(kInputBytes / static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))));

        auto command = [](std::vector<std::string> argv) {
            return [argv] {
                std::string out;
                int status = run_command(argv, &out);
                return status == 0 ? std::string() : argv[0] + " failed (status " +
                                                         std::to_string(status) + "): " + out;
            };
        };
        ASSERT_NO_FATAL_FAILURE(step("cp", command({"cp", mnt("redo.log"), mnt("copy-cp.log")}),
                                     {"redo.log", "copy-cp.log"}, expect));
        ASSERT_NO_FATAL_FAILURE(step(
            "a read/write copy with 128 KiB buffers",
            [&] { return copy_with_read_write(mnt("redo.log"), mnt("copy-rw128k.log"), 128 << 10); },
            {"redo.log", "copy-rw128k.log"}, expect));
        ASSERT_NO_FATAL_FAILURE(step(
            "a read/write copy with 10,000-byte buffers",
            [&] { return copy_with_read_write(mnt("redo.log"), mnt("copy-rw10000.log"), 10000); },
            {"redo.log", "copy-rw10000.log"}, expect));
        ASSERT_NO_FATAL_FAILURE(step("gzip -k", command({"gzip", "-k", "-f", mnt("redo.log")}),
                                     {"redo.log", "redo.log.gz"}, expect));
        for (size_t buffer : {size_t{1} << 20, size_t{4000}}) {
            ASSERT_NO_FATAL_FAILURE(step(
                "reading it with " + std::to_string(buffer) + "-byte reads",
                [&] {
                    long long n = read_through(mnt("redo.log"), buffer);
                    return n == static_cast<long long>(kInputBytes)
                               ? std::string()
                               : "read " + std::to_string(n) + " bytes of " +
                                     std::to_string(kInputBytes);
                },
                {"redo.log"}, expect));
        }

        // The bytes, last: reading the backing files directly fills the cache.
        const std::string want = read_whole(backing("redo.log"));
        ASSERT_EQ(want.size(), kInputBytes);
        for (const char* copy : {"copy-cp.log", "copy-rw128k.log", "copy-rw10000.log"})
            EXPECT_EQ(first_difference(read_whole(backing(copy)), want), "") << copy;
        std::string out;
        ASSERT_EQ(run_command({"sh", "-c", "gzip -dc \"$1\" | cmp - \"$2\"", "sh",
                               mnt("redo.log.gz"), backing("redo.log")},
                              &out),
                  0)
            << "gzip -dc of the compressed copy differs from the input: " << out;
        std::cout << "[ diofs    ] input from " << source << "; page cache per backing file:\n"
                  << report_ << std::flush;
    }

    std::string report_;
};

// strict: `-o dbopt,strict`; coalescing: the default options (read-ahead, write coalescing).
enum class Mode { strict, coalescing };

void PrintTo(Mode m, std::ostream* os) { *os << (m == Mode::strict ? "strict" : "coalescing"); }

std::vector<std::string> dbopt_options(Mode mode) {
    if (mode == Mode::strict)
        return {"dbopt", "strict"};
    return {"dbopt"};
}

std::string backing_mode_name(const ::testing::TestParamInfo<std::tuple<Backing, Mode>>& p) {
    return std::string(std::get<0>(p.param) == Backing::plain ? "PlainDir" : "XfsOn4K") +
           (std::get<1>(p.param) == Mode::strict ? "Strict" : "Coalescing");
}

const auto kBackingsAndModes =
    ::testing::Combine(::testing::Values(Backing::plain, Backing::xfs_4k),
                       ::testing::Values(Mode::strict, Mode::coalescing));

class DbOptPageCacheOn : public DbOptPageCache,
                         public ::testing::WithParamInterface<std::tuple<Backing, Mode>> {};

TEST_P(DbOptPageCacheOn, CopyGzipAndReadLeaveNoBackingPageResident) {
    DIOFS_MOUNT_ON(std::get<0>(GetParam()), dbopt_options(std::get<1>(GetParam())));
    copy_and_gzip(Expect::nothing_resident);
}

INSTANTIATE_TEST_SUITE_P(Backings, DbOptPageCacheOn, kBackingsAndModes, backing_mode_name);

// The control: without dbopt the same steps leave most of the pages resident, so the check
// above can fail.
TEST_F(DbOptPageCache, WithoutDboptTheSameStepsLeavePagesResident) {
    DIOFS_MOUNT_ON(Backing::plain, {});
    copy_and_gzip(Expect::mostly_resident);
}

// A backing file whose pages are already in the page cache when the mount touches it (written
// by another program just before: the usual case of a file an archiver copies). Under dbopt,
// the pages a write touches and the pages a read reads must not stay resident either. Such
// pages are often large folios (a buffered 1 MiB write makes them), which a POSIX_FADV_DONTNEED
// of only the 4 KiB page the bounce write touched does not drop.
class DbOptWarmPages : public DbOptTest,
                       public ::testing::WithParamInterface<std::tuple<Backing, Mode>> {
protected:
    static constexpr uint64_t kWarmBytes = 4u << 20;

    // Writes kWarmBytes into the backing file `name` outside the mount, 1 MiB per write,
    // fsync()s it (clean pages, which can be dropped) and returns its bytes.
    std::string make_warm(const std::string& name) {
        std::mt19937_64 rng(11);
        std::string data(kWarmBytes, '\0');
        for (auto& c : data)
            c = static_cast<char>(rng());
        Fd fd(::open(backing(name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        EXPECT_TRUE(fd) << errno_name(errno);
        for (uint64_t off = 0; off < kWarmBytes; off += 1 << 20)
            EXPECT_EQ(::pwrite(fd.get(), data.data() + off, 1 << 20, static_cast<off_t>(off)), 1 << 20);
        EXPECT_EQ(::fsync(fd.get()), 0);
        long pages = 0;
        const long r = resident_pages(backing(name), &pages);
        std::cout << "[ diofs    ] warm file " << name << ": " << r << " of " << pages
                  << " pages resident before the mount touches it" << std::endl;
        return data;
    }

    // The pages of [offset, offset + length) of backing file `name` still resident.
    std::vector<long> resident_in(const std::string& name, uint64_t offset, uint64_t length) {
        return resident_page_list(backing(name), offset, length);
    }
};

struct Write {
    uint64_t offset;
    size_t length;
};
// A head alone, a tail alone, head + body + tail, one byte.
constexpr Write kWarmWrites[] = {Write{100, 1}, Write{70000, 3000}, Write{1000007, 100000},
                                 Write{2 * 1048576, 700}, Write{3 * 1048576 + 4095, 2}};

TEST_P(DbOptWarmPages, WritesLeaveNoTouchedPageResident) {
    const Mode mode = std::get<1>(GetParam());
    DIOFS_MOUNT_ON(std::get<0>(GetParam()), dbopt_options(mode));
    std::string want = make_warm("warm");
    const std::string pool = want.substr(0, 300000);
    Fd fd(::open(mnt("warm").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd) << errno_name(errno);
    for (Write w : kWarmWrites) {
        SCOPED_TRACE("pwrite at " + std::to_string(w.offset) + " length " + std::to_string(w.length));
        ASSERT_EQ(::pwrite(fd.get(), pool.data() + 7, w.length, static_cast<off_t>(w.offset)),
                  static_cast<ssize_t>(w.length))
            << errno_name(errno);
        want.replace(w.offset, w.length, pool, 7, w.length);
        // Strict: on the device, its pages dropped, when the write returns. Coalescing: once
        // fsync returns.
        if (mode == Mode::coalescing) {
            ASSERT_EQ(::fsync(fd.get()), 0) << errno_name(errno);
        }
        const std::vector<long> left = resident_in("warm", w.offset, w.length);
        EXPECT_TRUE(left.empty()) << "pages written through the dbopt mount are still in the "
                                  << "page cache: " << pages_text(left);
    }
    EXPECT_EQ(fd.close(), success());
    EXPECT_EQ(first_difference(read_whole(mnt("warm")), want), "");
}

// The same writes one after the other without fsync; every page they touched must be gone
// once close returns (in strict mode already when each write returned).
TEST_P(DbOptWarmPages, WritesThenCloseLeaveNoTouchedPageResident) {
    DIOFS_MOUNT_ON(std::get<0>(GetParam()), dbopt_options(std::get<1>(GetParam())));
    std::string want = make_warm("warm");
    const std::string pool = want.substr(0, 300000);
    Fd fd(::open(mnt("warm").c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd) << errno_name(errno);
    for (Write w : kWarmWrites) {
        ASSERT_EQ(::pwrite(fd.get(), pool.data() + 11, w.length, static_cast<off_t>(w.offset)),
                  static_cast<ssize_t>(w.length))
            << "pwrite at " << w.offset << " length " << w.length << ": " << errno_name(errno);
        want.replace(w.offset, w.length, pool, 11, w.length);
    }
    EXPECT_EQ(fd.close(), success());
    for (Write w : kWarmWrites) {
        const std::vector<long> left = resident_in("warm", w.offset, w.length);
        EXPECT_TRUE(left.empty()) << "pwrite at " << w.offset << " length " << w.length
                                  << ": pages written through the dbopt mount are still in the "
                                  << "page cache after close: " << pages_text(left);
    }
    EXPECT_EQ(first_difference(read_whole(mnt("warm")), want), "");
}

TEST_P(DbOptWarmPages, ReadsLeaveNoReadPageResident) {
    DIOFS_MOUNT_ON(std::get<0>(GetParam()), dbopt_options(std::get<1>(GetParam())));
    const std::string want = make_warm("warm");
    EXPECT_EQ(first_difference(read_whole(mnt("warm")), want), "");
    const std::vector<long> left = resident_in("warm", 0, kWarmBytes);
    EXPECT_TRUE(left.empty()) << "pages read through the dbopt mount are still in the page "
                              << "cache: " << pages_text(left);
}

INSTANTIATE_TEST_SUITE_P(Backings, DbOptWarmPages, kBackingsAndModes, backing_mode_name);

// A backing filesystem that refuses O_DIRECT (ramfs): served buffered, correct bytes, one
// warning. The ramfs is mounted on a private directory and unmounted whatever happens.
class DbOptRamfs : public DbOptTest {};

TEST_F(DbOptRamfs, RefusedDirectIoIsServedBufferedWithOneWarning) {
    DIOFS_MOUNT_ON(Backing::ramfs);

    // Unaligned writes of every size, including enough (over 8 MiB) for the dropping path's
    // chunked writeback, into three files, opened and closed several times.
    std::mt19937_64 rng(7);
    std::string pool(3 << 20, '\0');
    for (auto& c : pool)
        c = static_cast<char>(rng());
    for (int round = 0; round < 3; ++round) {
        for (int f = 0; f < 3; ++f) {
            const std::string name = "f" + std::to_string(f);
            Fd m(::open(mnt(name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
            Fd rf(::open(ref(name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
            ASSERT_TRUE(m && rf) << name << ": " << errno_name(errno);
            for (int w = 0; w < 40; ++w) {
                const size_t len = std::uniform_int_distribution<size_t>(1, w % 8 == 0 ? (3 << 20) - 4096 : 9000)(rng);
                const off_t off = std::uniform_int_distribution<off_t>(0, 12 << 20)(rng);
                const char* src = pool.data() + std::uniform_int_distribution<size_t>(0, 4095)(rng);
                ASSERT_EQ(::pwrite(m.get(), src, len, off), static_cast<ssize_t>(len))
                    << errno_name(errno);
                ASSERT_EQ(::pwrite(rf.get(), src, len, off), static_cast<ssize_t>(len));
            }
            if (round == 1) {
                EXPECT_EQ(::fsync(m.get()), 0) << errno_name(errno);
            }
            EXPECT_EQ(m.close(), success());
        }
    }
    std::string out;
    ASSERT_EQ(run_command({"cp", mnt("f0"), mnt("copy")}, &out), 0) << out;
    ASSERT_EQ(run_command({"cp", ref("f0"), ref("copy")}, &out), 0) << out;
    for (const char* name : {"f0", "f1", "f2", "copy"}) {
        const std::string want = read_whole(ref(name));
        EXPECT_EQ(first_difference(read_whole(mnt(name)), want), "") << name << " through the mount";
        EXPECT_EQ(first_difference(read_whole(backing(name)), want), "") << "backing " << name;
    }
    const std::string log = mount().log();
    EXPECT_EQ(count_occurrences(log, "refuses direct I/O"), 1u)
        << "expected exactly one warning about the refused direct I/O; the log:\n" << log;
}

}  // namespace
}  // namespace diofs_test

// Concurrent writers under dbopt: several threads write disjoint, unaligned records (100 to
// 3000 bytes, so that most sectors and pages hold records of several threads) into one file,
// through their own descriptors or all through one shared descriptor, in shuffled order (filling
// holes) or in ascending order (all of them extending the file at once); then each thread
// writes a stripe of its own (a quarter of the file) in ascending order, so that with coalescing
// every thread is a contiguous stream whose chunks are written out by the I/O threads at the same
// time as the others' (and the last stripe's extends the file). A reader thread reads
// random ranges meanwhile: every byte it sees must be either still 0 or its final value. Then
// no page of the backing file may be in the page cache, and every byte of the file, through the
// mount and in the backing file, must be the one written.
//
// Runs on a plain directory and on xfs and ext4 on 4096-byte-sector loop devices, each under
// `-o dbopt,strict` and with the default options (read-ahead and write coalescing: each writer's
// records are held back and written out later, and the reader's reads write out what is held
// back first, so the reader's promise is the same).
// DIOFS_SEED=<n> replays the layout and the orders.

#include "dbopt_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <tuple>

namespace diofs_test {
namespace {

constexpr int kWriters = 4;
constexpr uint64_t kFileBytes = 4u << 20;

struct Record {
    uint64_t offset;
    uint32_t length;
    int owner;
};

struct Layout {
    std::vector<Record> records;
    std::string expected;  // no byte is 0: a 0 is a byte nobody wrote
};

uint8_t byte_value(uint64_t offset, size_t record) {
    uint64_t x = (offset + 1) * 0x9e3779b97f4a7c15ULL ^ (record + 1) * 0xc2b2ae3d27d4eb4fULL;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 32;
    return static_cast<uint8_t>(1 + x % 255);
}

// With `stripes`, thread t owns the t-th quarter (of `threads`) of the file.
Layout make_layout(std::mt19937_64& rng, uint64_t total, int threads, bool stripes = false) {
    Layout l;
    l.expected.resize(total);
    int owner = 0;
    for (uint64_t off = 0; off < total;) {
        uint32_t len = std::uniform_int_distribution<uint32_t>(100, 3000)(rng);
        if (off + len > total)
            len = static_cast<uint32_t>(total - off);
        // Neighbours belong to different threads: the shared sectors are really contended.
        owner = (owner + std::uniform_int_distribution<int>(1, threads - 1)(rng)) % threads;
        if (stripes)
            owner = static_cast<int>(off * static_cast<uint64_t>(threads) / total);
        l.records.push_back(Record{off, len, owner});
        for (uint32_t i = 0; i < len; ++i)
            l.expected[off + i] = static_cast<char>(byte_value(off + i, l.records.size() - 1));
        off += len;
    }
    return l;
}

// Which record holds `offset`.
size_t record_at(const Layout& l, uint64_t offset) {
    auto it = std::upper_bound(l.records.begin(), l.records.end(), offset,
                               [](uint64_t o, const Record& r) { return o < r.offset; });
    return static_cast<size_t>(it - l.records.begin()) - 1;
}

std::string explain(const Layout& l, const std::string& got, const std::string& what) {
    std::string d = first_difference(got, l.expected);
    if (d.empty())
        return "";
    size_t i = 0;
    while (i < got.size() && i < l.expected.size() && got[i] == l.expected[i])
        ++i;
    std::ostringstream s;
    s << what << ": " << d;
    if (i < l.expected.size()) {
        const size_t r = record_at(l, i);
        s << "; that byte belongs to record #" << r << " [" << l.records[r].offset << ", "
          << l.records[r].offset + l.records[r].length << ") of thread " << l.records[r].owner;
        size_t lost = 0, zero = 0;
        for (size_t j = 0; j < l.expected.size(); ++j) {
            if (j >= got.size() || got[j] != l.expected[j]) {
                ++lost;
                zero += j >= got.size() || got[j] == 0;
            }
        }
        s << "; " << lost << " wrong bytes in all, " << zero << " of them zero (never written "
          << "or lost)";
    }
    return s.str();
}

enum class Descriptors { own, shared };
enum class Order { shuffled, ascending, stripes };
// strict: `-o dbopt,strict`; coalescing: the default options (read-ahead, write coalescing).
enum class Mode { strict, coalescing };

void PrintTo(Descriptors d, std::ostream* os) { *os << (d == Descriptors::own ? "own" : "shared"); }
void PrintTo(Mode m, std::ostream* os) { *os << (m == Mode::strict ? "strict" : "coalescing"); }

using Param = std::tuple<Backing, Descriptors, Mode>;

class DbOptConcurrency : public DbOptTest, public ::testing::WithParamInterface<Param> {
protected:
    // One file written by kWriters threads (and read by one more) in `order`.
    void write_concurrently(const std::string& name, Order order, uint64_t seed) {
        std::mt19937_64 rng(seed);
        const Layout layout = make_layout(rng, kFileBytes, kWriters, order == Order::stripes);
        std::vector<std::vector<size_t>> work(kWriters);
        for (size_t i = 0; i < layout.records.size(); ++i)
            work[static_cast<size_t>(layout.records[i].owner)].push_back(i);
        if (order == Order::shuffled)
            for (auto& w : work)
                std::shuffle(w.begin(), w.end(), rng);

        const std::string path = mnt(name);
        Fd shared(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
        ASSERT_TRUE(shared) << path << ": " << errno_name(errno);
        const bool own = std::get<1>(GetParam()) == Descriptors::own;

        std::mutex failure_mutex;
        std::string failure;
        auto record_failure = [&](const std::string& f) {
            std::lock_guard lock(failure_mutex);
            if (failure.empty())
                failure = f;
        };
        std::atomic<int> writers_left{kWriters};
        std::atomic<long> reads{0};

        std::vector<std::thread> threads;
        for (int t = 0; t < kWriters; ++t) {
            threads.emplace_back([&, t] {
                Fd mine;
                int fd = shared.get();
                if (own) {
                    mine = Fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
                    if (!mine) {
                        record_failure("thread " + std::to_string(t) + ": open: " + errno_name(errno));
                        --writers_left;
                        return;
                    }
                    fd = mine.get();
                }
                for (size_t r : work[static_cast<size_t>(t)]) {
                    const Record& rec = layout.records[r];
                    ssize_t n = ::pwrite(fd, layout.expected.data() + rec.offset, rec.length,
                                         static_cast<off_t>(rec.offset));
                    if (n != static_cast<ssize_t>(rec.length)) {
                        std::ostringstream s;
                        s << "thread " << t << ": pwrite of record #" << r << " at " << rec.offset
                          << " length " << rec.length << " returned " << n
                          << (n < 0 ? " (" + errno_name(errno) + ")" : "");
                        record_failure(s.str());
                        break;
                    }
                }
                --writers_left;
            });
        }
        // The reader: what it sees is, byte by byte, either not yet written (0) or final.
        threads.emplace_back([&] {
            Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
            if (!fd) {
                record_failure("reader: open: " + errno_name(errno));
                return;
            }
            std::mt19937_64 rrng(seed ^ 0x5555);
            std::string buf;
            while (writers_left.load() > 0) {
                const uint64_t off = std::uniform_int_distribution<uint64_t>(0, kFileBytes - 1)(rrng);
                const size_t len = std::uniform_int_distribution<size_t>(1, 64 << 10)(rrng);
                buf.resize(len);
                ssize_t n = ::pread(fd.get(), buf.data(), len, static_cast<off_t>(off));
                if (n < 0) {
                    record_failure("reader: pread at " + std::to_string(off) + ": " + errno_name(errno));
                    return;
                }
                ++reads;
                for (ssize_t i = 0; i < n; ++i) {
                    const char c = buf[static_cast<size_t>(i)];
                    if (c != 0 && c != layout.expected[off + static_cast<uint64_t>(i)]) {
                        const size_t r = record_at(layout, off + static_cast<uint64_t>(i));
                        std::ostringstream s;
                        s << "reader: byte " << off + static_cast<uint64_t>(i)
                          << " read while the writers ran is 0x" << std::hex
                          << (unsigned(c) & 0xff) << ", neither 0 nor its value 0x"
                          << (unsigned(layout.expected[off + static_cast<uint64_t>(i)]) & 0xff)
                          << std::dec << " (record #" << r << " of thread "
                          << layout.records[r].owner << ")";
                        record_failure(s.str());
                        return;
                    }
                }
            }
        });
        for (auto& t : threads)
            t.join();
        EXPECT_EQ(failure, "");

        struct stat st{};
        ASSERT_EQ(::fstat(shared.get(), &st), 0);
        EXPECT_EQ(static_cast<uint64_t>(st.st_size), kFileBytes) << "size through the mount";
        EXPECT_EQ(shared.close(), success());
        // Before anything reads the backing file directly: no page of it may be cached.
        long pages = 0;
        if (resident_pages(backing(name), &pages) != 0) {
            std::ostringstream s;
            for (long p : resident_page_list(backing(name))) {
                const uint64_t at = static_cast<uint64_t>(p) * 4096;
                s << " page " << p << " (records #" << record_at(layout, at) << "..#"
                  << record_at(layout, std::min(at + 4095, kFileBytes - 1)) << ")";
            }
            ADD_FAILURE() << "pages of the backing file (of " << pages
                          << ") left in the page cache:" << s.str();
        }
        EXPECT_EQ(explain(layout, read_whole(path), "through the mount"), "");
        EXPECT_EQ(explain(layout, read_whole(backing(name)), "the backing file"), "");
        std::cout << "[ diofs    ] " << name << ": " << layout.records.size() << " records by "
                  << kWriters << " threads, " << reads.load() << " concurrent reads" << std::endl;
    }
};

TEST_P(DbOptConcurrency, DisjointUnalignedRecordsAreAllKept) {
    if (std::get<2>(GetParam()) == Mode::strict) {
        DIOFS_MOUNT_ON(std::get<0>(GetParam()), {"dbopt", "strict"});
    } else {
        DIOFS_MOUNT_ON(std::get<0>(GetParam()), {"dbopt"});
    }
    const uint64_t seed = seed_from_environment();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (replay with DIOFS_SEED=" +
                 std::to_string(seed) + ")");
    ASSERT_NO_FATAL_FAILURE(write_concurrently("shuffled", Order::shuffled, seed));
    ASSERT_NO_FATAL_FAILURE(write_concurrently("ascending", Order::ascending, seed + 1));
    ASSERT_NO_FATAL_FAILURE(write_concurrently("stripes", Order::stripes, seed + 2));
}

std::string run_name(const ::testing::TestParamInfo<Param>& p) {
    static const char* const kBackingNames[] = {"PlainDir", "XfsOn4K", "Ext4On4K"};
    return std::string(kBackingNames[static_cast<int>(std::get<0>(p.param))]) +
           (std::get<1>(p.param) == Descriptors::own ? "OwnDescriptors" : "SharedDescriptor") +
           (std::get<2>(p.param) == Mode::strict ? "Strict" : "Coalescing");
}

INSTANTIATE_TEST_SUITE_P(
    Backings, DbOptConcurrency,
    ::testing::Combine(::testing::Values(Backing::plain, Backing::xfs_4k, Backing::ext4_4k),
                       ::testing::Values(Descriptors::own, Descriptors::shared),
                       ::testing::Values(Mode::strict, Mode::coalescing)),
    run_name);

}  // namespace
}  // namespace diofs_test

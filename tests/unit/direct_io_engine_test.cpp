// The dbopt engine against an in-memory model, on synthetic sector sizes (8 and 64 bytes, with
// pages of 16 and 128) so that every edge is hit quickly.

#include "diofs/io/direct_io_engine.hpp"
#include "memory_backing_io.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <mutex>
#include <random>
#include <string>
#include <thread>

namespace diofs {
namespace {

std::string read_all(const DirectIoEngine& engine, BackingIo& io, uint64_t offset, size_t length) {
    AlignedBuffer scratch;
    ReadView view;
    ssize_t n = engine.read(io, offset, length, scratch, view);
    EXPECT_GE(n, 0);
    return n > 0 ? std::string(view.data, view.length) : std::string();
}

struct Geometry {
    uint32_t sector, page;
};

class EngineModel : public ::testing::TestWithParam<Geometry> {};

TEST_P(EngineModel, RandomWritesReadsAndTruncatesMatchAPlainString) {
    const auto [sector, page] = GetParam();
    const char* env = std::getenv("DIOFS_SEED");
    const uint64_t seed = env ? std::stoull(env) : std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    MemoryBackingIo io(sector, page);
    DirectIoEngine engine({sector, sector});
    std::string model;
    std::string source(4 * page + 3 * sector, '\0');
    for (int op = 0; op < 20000; ++op) {
        int kind = static_cast<int>(rng() % 10);
        uint64_t offset = rng() % (8 * page);
        size_t length = rng() % (3 * page + 2 * sector);
        if (kind < 6) {
            // The source address varies too: aligned and not.
            size_t shift = rng() % (2 * sector);
            for (size_t i = 0; i < length; ++i)
                source[shift + i] = static_cast<char>('a' + rng() % 26);
            ASSERT_EQ(engine.write(io, source.data() + shift, length, offset),
                      static_cast<ssize_t>(length));
            if (length > 0 && model.size() < offset + length)  // write(2) of 0 bytes extends nothing
                model.resize(offset + length, '\0');
            if (length > 0)
                model.replace(offset, length, source.data() + shift, length);
        } else if (kind < 9) {
            std::string expect = offset < model.size() ? model.substr(offset, length) : "";
            ASSERT_EQ(read_all(engine, io, offset, length), expect)
                << "read " << offset << "+" << length << " after op " << op;
        } else {
            uint64_t size = rng() % (8 * page);
            io.truncate(size);
            model.resize(size, '\0');
        }
    }
    ASSERT_EQ(io.contents(), model);
}

INSTANTIATE_TEST_SUITE_P(Sectors, EngineModel,
                         ::testing::Values(Geometry{8, 16}, Geometry{64, 128}, Geometry{64, 64}));

TEST(Engine, AlignedRequestsNeverBounce) {
    MemoryBackingIo io(64, 128);
    DirectIoEngine engine({64, 64});
    AlignedBuffer buf(64, 4096);
    std::memset(buf.data(), 'x', 4096);
    ASSERT_EQ(engine.write(io, buf.data(), 4096, 64 * 3), 4096);
    EXPECT_EQ(io.bounce_calls, 0);
    EXPECT_EQ(io.direct_calls, 1) << "aligned source: no copy, one direct write";
}

TEST(Engine, OddTailOfAGzipLikeStream) {
    // The seed's gzip output: writes of 16 KiB, then one of 9,680 bytes.
    MemoryBackingIo io(512, 4096);
    DirectIoEngine engine({512, 512});
    std::string expect;
    std::string chunk(16384, 'g');
    for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(engine.write(io, chunk.data(), chunk.size(), expect.size()), 16384);
        expect += chunk;
    }
    EXPECT_EQ(io.bounce_calls, 0);
    std::string tail(9680, 't');
    ASSERT_EQ(engine.write(io, tail.data(), tail.size(), expect.size()), 9680);
    expect += tail;
    EXPECT_EQ(io.bounce_calls, 1) << "only the last 464 bytes bounce";
    EXPECT_EQ(io.contents(), expect);
    EXPECT_EQ(read_all(engine, io, 0, expect.size() + 100), expect) << "short at end of file";
}

TEST(Engine, ErrorsGiveShortCountsOrErrno) {
    MemoryBackingIo io(8, 16);
    DirectIoEngine engine({8, 8});
    std::string data(40, 'e');
    io.fail_after_bytes = 3;  // the head (3 bytes) fits, the body does not
    EXPECT_EQ(engine.write(io, data.data(), 40, 5), 3);
    EXPECT_EQ(engine.write(io, data.data(), 40, 5), -ENOSPC);
}

TEST(Engine, WritersOfOneSectorOnSeveralThreadsLoseNothing) {
    // Four threads write interleaved 19-byte records from unaligned memory: every sector and
    // page holds bytes of several writers, each record has a bounced head or tail and an
    // aligned body that its thread copies through its own aligned buffer. One write at a
    // time, as DirectFile::write_now runs them (InodeIo::writing). Every byte must survive.
    MemoryBackingIo io(8, 16);
    DirectIoEngine engine({8, 8});
    std::mutex writing;
    constexpr int kThreads = 4, kRecords = 3000, kRecord = 19;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            AlignedBuffer source(8, kRecord + 1);
            char* rec = source.data() + 1;  // not aligned: the body is copied
            std::memset(rec, 'A' + t, kRecord);
            for (int i = 0; i < kRecords; ++i) {
                uint64_t off = (static_cast<uint64_t>(i) * kThreads + t) * kRecord;
                std::lock_guard one_at_a_time(writing);
                ASSERT_EQ(engine.write(io, rec, kRecord, off), kRecord);
            }
        });
    for (auto& th : threads)
        th.join();
    EXPECT_EQ(io.direct_calls, kThreads * kRecords) << "every record has an aligned body";
    std::string got = io.contents();
    ASSERT_EQ(got.size(), static_cast<size_t>(kThreads * kRecords * kRecord));
    for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], 'A' + static_cast<int>((i / kRecord) % kThreads)) << "byte " << i;
}

}  // namespace
}  // namespace diofs

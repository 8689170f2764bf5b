// Write coalescing (WriteBehind) against an in-memory backing file that can fail on purpose
// (a fault-injecting sink) or hold the worker inside a writeout, with small chunks (64 bytes,
// direct-I/O alignment 8 or 16) so that every edge is reached in a few bytes: what is held
// back and when it goes out, in which order and in which pieces, the carry of an unaligned
// stream, the bounds on memory, and what a failed writeout does to the next write, to
// error() (fsync, close) and to what was pending after it.

#include "diofs/io/buffer_pool.hpp"
#include "diofs/io/io_workers.hpp"
#include "diofs/io/write_behind.hpp"

#include "streaming_fakes.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <sstream>
#include <thread>

namespace diofs {
namespace {

constexpr size_t kChunk = 64;

class WriteBehindTest : public ::testing::Test {
protected:
    // A fresh WriteBehind over `backing` (window in bytes; alignment of the file).
    void make(uint64_t window = 4 * kChunk, uint32_t alignment = 8, size_t pool_limit = 64 * kChunk) {
        wb.reset();
        workers.reset();  // before the pool: a finished task may still hold a chunk
        pool = std::make_unique<BufferPool>(kChunk, 8, pool_limit);
        workers = std::make_unique<IoWorkers>(2);
        wb = std::make_unique<WriteBehind>(
            [this](const char* buf, size_t length, uint64_t offset) {
                return backing.write(buf, length, offset);
            },
            *pool, *workers, window, alignment,
            [this](uint64_t offset, uint64_t length, uint64_t ahead) {
                return backing.reserve(offset, length, ahead);
            });
    }
    void SetUp() override { make(); }
    // Whatever a test left held or failing, the WriteBehind can write out and go.
    void TearDown() override {
        backing.open();
        wb.reset();
        if (pool) {
            EXPECT_EQ(pool->counters().in_use, 0u) << "chunks not given back to the pool";
        }
        workers.reset();
        pool.reset();
    }

    ssize_t write(const std::string& data, uint64_t offset) {
        return wb->write(data.data(), data.size(), offset, nullptr);
    }
    // `data` written at `offset` in pieces of `piece` bytes; false on any short count.
    bool write_in_pieces(const std::string& data, uint64_t offset, size_t piece) {
        for (size_t at = 0; at < data.size(); at += piece) {
            const std::string part = data.substr(at, piece);
            if (write(part, offset + at) != static_cast<ssize_t>(part.size()))
                return false;
        }
        return true;
    }
    // Waits (bounded) until pending() is `want` (a writeout that has returned may still be on
    // its way out of the queue).
    bool wait_pending(std::pair<uint64_t, uint64_t> want) {
        for (int i = 0; i < 1000; ++i) {
            if (wb->pending() == want)
                return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return false;
    }
    // Waits (bounded) for the WriteBehind's pool usage to reach `bytes` in use.
    bool wait_in_use(size_t bytes) {
        for (int i = 0; i < 1000; ++i) {
            if (pool->counters().in_use == bytes)
                return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return false;
    }

    FakeBacking backing;  // outlives the WriteBehind that writes into it
    std::unique_ptr<BufferPool> pool;
    std::unique_ptr<IoWorkers> workers;
    std::unique_ptr<WriteBehind> wb;
};

TEST_F(WriteBehindTest, NothingReachesTheBackingFileBeforeItIsDue) {
    const std::string data = pattern(50, 1);
    ASSERT_EQ(write(data.substr(0, 10), 0), 10);
    EXPECT_EQ(wb->pending(), (std::pair<uint64_t, uint64_t>{0, 10}));
    ASSERT_EQ(write(data.substr(10), 10), 40);
    EXPECT_EQ(wb->pending(), (std::pair<uint64_t, uint64_t>{0, 50}));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_TRUE(backing.calls().empty()) << "a chunk that is not full was written out";
    wb->settle();
    ASSERT_EQ(backing.calls().size(), 1u);
    EXPECT_EQ(backing.calls()[0].offset, 0u);
    EXPECT_EQ(backing.calls()[0].length, 50u);
    EXPECT_EQ(difference(backing.contents(), data), "");
    EXPECT_EQ(wb->pending(), (std::pair<uint64_t, uint64_t>{0, 0}));
    EXPECT_EQ(wb->error(), 0);
}

TEST_F(WriteBehindTest, AFullChunkGoesOutWithoutWaitingForSettle) {
    const std::string data = pattern(100, 2);
    ASSERT_EQ(write(data, 0), 100);
    ASSERT_TRUE(backing.wait_calls(1)) << "the full chunk was never written out";
    const auto calls = backing.calls();
    EXPECT_EQ(calls[0].offset, 0u);
    EXPECT_EQ(calls[0].length, kChunk);
    EXPECT_TRUE(wait_pending({64, 100})) << "pending: [" << wb->pending().first << ", "
                                         << wb->pending().second << ")";
    wb->settle();
    EXPECT_EQ(difference(backing.contents(), data), "");
}

// A long contiguous stream goes out in whole chunks, one after the other in file order, never
// two at once, whatever the number of workers.
TEST_F(WriteBehindTest, AStreamIsWrittenInWholeChunksInFileOrder) {
    backing.set_delay(std::chrono::microseconds(300));
    std::mt19937_64 rng(3);
    const std::string data = pattern(3000, 3);
    for (size_t at = 0; at < data.size();) {
        const size_t n = std::min<size_t>(std::uniform_int_distribution<size_t>(1, 150)(rng),
                                          data.size() - at);
        ASSERT_EQ(write(data.substr(at, n), at), static_cast<ssize_t>(n)) << "at " << at;
        at += n;
    }
    wb->settle();
    EXPECT_EQ(difference(backing.contents(), data), "");
    const auto calls = backing.calls();
    uint64_t expect = 0;
    for (size_t i = 0; i < calls.size(); ++i) {
        SCOPED_TRACE("writeout #" + std::to_string(i));
        EXPECT_EQ(calls[i].offset, expect) << "out of file order";
        EXPECT_EQ(calls[i].result, static_cast<ssize_t>(calls[i].length));
        if (i + 1 < calls.size()) {
            EXPECT_EQ(calls[i].length, kChunk) << "not a whole chunk";
        }
        expect = calls[i].offset + calls[i].length;
    }
    EXPECT_EQ(expect, data.size());
    EXPECT_EQ(backing.max_in_flight(), 1) << "two writeouts of one file at once";
    EXPECT_LE(pool->counters().peak, 4 * kChunk) << "more than the window held";
}

// A stream that starts off alignment: the first chunk is cut back to the last aligned boundary
// and its odd end carried into the next, so every later writeout starts aligned (and only the
// last one may end unaligned).
TEST_F(WriteBehindTest, AnUnalignedStreamCarriesItsOddEndIntoTheNextChunk) {
    make(4 * kChunk, /*alignment=*/16);
    const uint64_t start = 5;
    const std::string data = pattern(700, 4);
    ASSERT_TRUE(write_in_pieces(data, start, 7));
    wb->settle();
    EXPECT_EQ(difference(backing.contents(), std::string(start, '\0') + data), "");
    const auto calls = backing.calls();
    ASSERT_GE(calls.size(), 3u);
    EXPECT_EQ(calls[0].offset, start);
    EXPECT_EQ(calls[0].offset + calls[0].length, 64u) << "the first chunk is not cut back";
    uint64_t expect = start;
    for (size_t i = 0; i < calls.size(); ++i) {
        SCOPED_TRACE("writeout #" + std::to_string(i) + " at " + std::to_string(calls[i].offset) +
                     " length " + std::to_string(calls[i].length));
        EXPECT_EQ(calls[i].offset, expect);
        if (i > 0) {
            EXPECT_EQ(calls[i].offset % 16, 0u) << "a later chunk starts unaligned";
        }
        if (i + 1 < calls.size()) {
            EXPECT_EQ((calls[i].offset + calls[i].length) % 16, 0u) << "ends unaligned";
        }
        expect = calls[i].offset + calls[i].length;
    }
    EXPECT_EQ(expect, start + data.size());
}

// A write that does not continue the stream sends what is pending on its way; writes land in
// the order they were made, so the later of two overlapping writes wins.
TEST_F(WriteBehindTest, ANonContiguousWriteSendsThePendingOneOutFirst) {
    const std::string a = pattern(10, 5), b = pattern(10, 6), c = pattern(15, 7);
    ASSERT_EQ(write(a, 0), 10);
    ASSERT_EQ(write(b, 100), 10);
    ASSERT_TRUE(backing.wait_calls(1)) << "the first write never went out";
    EXPECT_EQ(backing.calls()[0].offset, 0u);
    EXPECT_EQ(backing.calls()[0].length, 10u);
    EXPECT_TRUE(wait_pending({100, 110})) << "pending: [" << wb->pending().first << ", "
                                          << wb->pending().second << ")";
    ASSERT_EQ(write(c, 105), 15);  // overlaps the end of b
    ASSERT_EQ(write(b.substr(0, 3), 2), 3);  // and back into a
    wb->settle();
    std::string want(120, '\0');
    want.replace(0, 10, a);
    want.replace(100, 10, b);
    want.replace(105, 15, c);
    want.replace(2, 3, b.substr(0, 3));
    EXPECT_EQ(difference(backing.contents(), want), "");
    std::vector<uint64_t> order;
    for (const auto& call : backing.calls())
        order.push_back(call.offset);
    EXPECT_EQ(order, (std::vector<uint64_t>{0, 100, 105, 2}));
}

// The writeout of [128, 192) fails: the next write says so and takes nothing, error() (fsync,
// close) says so too, the bytes before it stay, nothing after it lands. The file stays in
// error: a write after the failure was reported, even once the disk is healthy again, must
// not land beyond the bytes that were dropped (a hole of zeros where acknowledged bytes were).
TEST_F(WriteBehindTest, AFailedWriteoutKeepsTheFileInError) {
    backing.fail_from(128);
    const std::string data = pattern(192, 8);
    ASSERT_EQ(write(data, 0), 192);
    wb->settle();  // the failure happens; nobody is told yet
    const std::string more = pattern(40, 9);
    EXPECT_EQ(write(more, 192), -ENOSPC) << "the next write must report the failed writeout";
    EXPECT_EQ(wb->pending(), (std::pair<uint64_t, uint64_t>{0, 0})) << "the failing write took bytes";
    wb->settle();
    EXPECT_EQ(difference(backing.contents(), data.substr(0, 128)), "")
        << "the bytes before the failure must stay, and nothing after it land";
    EXPECT_EQ(wb->error(), -ENOSPC) << "fsync/close after the failing write must fail too";
    EXPECT_EQ(wb->error(), -ENOSPC) << "the error stays";

    backing.heal();
    EXPECT_EQ(write(more, 192), -ENOSPC) << "a write after the failure took bytes";
    EXPECT_EQ(write(more, 0), -ENOSPC) << "a write elsewhere after the failure took bytes";
    wb->settle();
    EXPECT_EQ(wb->error(), -ENOSPC);
    EXPECT_EQ(difference(backing.contents(), data.substr(0, 128)), "")
        << "something landed after the bytes that were dropped";
}

// A failed writeout is logged when it happens, naming the file, the range and the error, not
// only reported to a later call (which may never come: a program that is killed).
TEST_F(WriteBehindTest, AFailedWriteoutIsLoggedWhenItHappens) {
    std::ostringstream log;
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
    struct Restore {
        std::shared_ptr<spdlog::logger> logger;
        ~Restore() { spdlog::set_default_logger(logger); }
    } restore{previous};
    WriteBehind named(
        [this](const char* buf, size_t length, uint64_t offset) {
            return backing.write(buf, length, offset);
        },
        *pool, *workers, 4 * kChunk, 8, {}, "inode 8:1/1234");
    backing.fail_from(64, EIO);
    ASSERT_EQ(named.write(pattern(100, 26).data(), 100, 0, nullptr), 100);  // chunk 0 goes out
    ASSERT_TRUE(backing.wait_calls(1));
    named.settle();
    const std::string text = log.str();
    EXPECT_NE(text.find("inode 8:1/1234"), std::string::npos) << text;
    EXPECT_NE(text.find("at offset 64"), std::string::npos) << text;
    EXPECT_NE(text.find(std::strerror(EIO)), std::string::npos) << text;
    EXPECT_EQ(named.error(), -EIO);
}

TEST_F(WriteBehindTest, AFailedWriteoutIsReportedByErrorWithoutAnotherWrite) {
    backing.fail_from(0, EIO);
    ASSERT_EQ(write(pattern(30, 10), 0), 30);
    wb->settle();
    EXPECT_EQ(wb->error(), -EIO);
    EXPECT_EQ(wb->error(), -EIO);
    EXPECT_EQ(backing.contents(), "");
}

// Room is reserved before bytes are taken: the write that does not fit gets ENOSPC and takes
// nothing, every write before it lands in full, and once there is room again (the operator
// freed space) the same write is taken and the file is every acknowledged byte.
TEST_F(WriteBehindTest, ENOSPCComesFromTheWriteThatDoesNotFit) {
    uint64_t capacity = 300;
    backing.set_capacity(capacity);
    const std::string data = pattern(600, 20);
    int refused = 0;
    for (size_t at = 0; at < data.size(); at += 50) {
        ssize_t n;
        while ((n = write(data.substr(at, 50), at)) == -ENOSPC) {
            ++refused;
            EXPECT_EQ(wb->pending().second, at) << "the refused write took bytes";
            EXPECT_LT(capacity, at + 50) << "a write that fits was refused at " << at;
            capacity += 60;  // the operator frees some space; the same write again
            backing.set_capacity(capacity);
        }
        ASSERT_EQ(n, 50) << "at " << at;
    }
    EXPECT_GE(refused, 3) << "the disk was never full: the test tested nothing";
    wb->settle();
    EXPECT_EQ(wb->error(), 0) << "a writeout failed: the reservation did not hold";
    EXPECT_EQ(difference(backing.contents(), data), "");
}

// A stream of small writes reserves ahead of itself (twice what it has so far, up to a chunk):
// a few reservations, not one per write, and every byte is covered before it is taken.
TEST_F(WriteBehindTest, AStreamReservesAheadOfItself) {
    const std::string data = pattern(64 * 20, 28);
    ASSERT_TRUE(write_in_pieces(data, 0, 4));  // 320 writes
    wb->settle();
    EXPECT_EQ(difference(backing.contents(), data), "");
    const auto reserves = backing.reserves();
    EXPECT_LE(reserves.size(), 30u) << "one reservation per write";
    uint64_t covered = 0;
    for (const auto& r : reserves) {
        EXPECT_EQ(r.offset, covered) << "a reservation left a gap or went back";
        EXPECT_LE(static_cast<uint64_t>(r.result), kChunk) << "reserved more than a chunk ahead";
        covered = r.offset + r.length + static_cast<uint64_t>(r.result);
    }
    // After a change of the file (a truncate), the room is asked again.
    wb->forget_room();
    ASSERT_EQ(write(data.substr(0, 4), 0), 4);
    EXPECT_EQ(backing.reserves().size(), reserves.size() + 1);
}

// A backing file that cannot be sure of room (no fallocate, free space low) takes nothing:
// the caller writes through, after what was taken before is out (else the older bytes could
// land on top of the newer ones).
TEST_F(WriteBehindTest, WithoutRoomNothingIsTaken) {
    const std::string older = pattern(100, 21);
    ASSERT_EQ(write(older, 0), 100);
    backing.set_write_through(true);
    EXPECT_EQ(write(pattern(100, 27), 50), 0);
    EXPECT_EQ(wb->pending(), (std::pair<uint64_t, uint64_t>{0, 0}));
    EXPECT_EQ(difference(backing.contents(), older), "") << "the older bytes are not out first";
    backing.set_write_through(false);
    EXPECT_EQ(write(pattern(100, 21), 0), 100);
}

// An exception in a writeout (no memory for it) is that file's error, not the end of the I/O
// thread or of the daemon: logged, returned by the next write and by error(), and the workers
// go on serving other files.
TEST_F(WriteBehindTest, AnExceptionInAWriteoutIsTheFilesError) {
    FakeBacking other_backing;
    std::atomic<int> calls{0};
    WriteBehind throwing(
        [&](const char*, size_t, uint64_t) -> ssize_t {
            ++calls;
            throw std::bad_alloc();
        },
        *pool, *workers, 4 * kChunk, 8);
    ASSERT_EQ(throwing.write(pattern(100, 22).data(), 100, 0, nullptr), 100);
    throwing.settle();
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(throwing.error(), -ENOMEM);
    EXPECT_EQ(throwing.write(pattern(10, 23).data(), 10, 100, nullptr), -ENOMEM);
    // The workers still run: this fixture's file writes out through them.
    const std::string data = pattern(200, 24);
    ASSERT_EQ(write(data, 0), 200);
    wb->settle();
    EXPECT_EQ(wb->error(), 0);
    EXPECT_EQ(difference(backing.contents(), data), "");
}

// While bytes are pending, the file was last modified when the last write was taken.
TEST_F(WriteBehindTest, TheTimeOfTheLastWriteIsKept) {
    timespec before{};
    ::clock_gettime(CLOCK_REALTIME_COARSE, &before);
    ASSERT_EQ(write(pattern(10, 25), 0), 10);
    const timespec t = wb->last_write();
    EXPECT_GE(t.tv_sec, before.tv_sec);
    EXPECT_TRUE(t.tv_sec > before.tv_sec || t.tv_nsec >= before.tv_nsec);
}

// A writeout that lands in part: the part before the failure stays, byte for byte, and nothing
// after it, whichever of the writes or error() tells.
TEST_F(WriteBehindTest, APartialWriteoutKeepsItsPrefixAndNothingAfter) {
    backing.fail_from(150);
    backing.set_delay(std::chrono::microseconds(200));
    const std::string data = pattern(640, 11);
    int told_by_write = 0;
    for (size_t at = 0; at < data.size(); at += 16) {
        ssize_t n = write(data.substr(at, 16), at);
        if (n < 0) {
            EXPECT_EQ(n, -ENOSPC);
            told_by_write = static_cast<int>(n);
            break;
        }
        ASSERT_EQ(n, 16);
    }
    wb->settle();
    EXPECT_EQ(wb->error(), -ENOSPC) << "(the error was "
                                         << (told_by_write ? "" : "not ")
                                         << "reported by a write)";
    EXPECT_EQ(difference(backing.contents(), data.substr(0, 150)), "");
}

// Chunks queued behind the one that fails never reach the file, nor does the one filling.
TEST_F(WriteBehindTest, WhatIsPendingAfterAFailureIsDropped) {
    backing.hold();
    const std::string data = pattern(158, 12);
    ASSERT_EQ(write(data.substr(0, 64), 0), 64);  // chunk 0, out to the worker
    ASSERT_TRUE(backing.wait_entered(1));
    ASSERT_EQ(write(data.substr(64, 64), 64), 64);  // chunk 1, queued
    ASSERT_EQ(write(data.substr(128), 128), 30);    // filling
    EXPECT_EQ(wb->pending(), (std::pair<uint64_t, uint64_t>{0, 158}));
    backing.fail_from(0, ENOSPC, /*once=*/true);
    backing.open();
    wb->settle();
    const auto calls = backing.calls();
    ASSERT_EQ(calls.size(), 1u) << "writes queued behind the failure were written out";
    EXPECT_EQ(calls[0].result, -ENOSPC);
    EXPECT_EQ(backing.contents(), "");
    EXPECT_EQ(wb->pending(), (std::pair<uint64_t, uint64_t>{0, 0}));
    EXPECT_EQ(write(data.substr(0, 10), 158), -ENOSPC);
    EXPECT_EQ(wb->error(), -ENOSPC);
}

// A write waits for memory (its file's window is full) while the writeout ahead of it fails.
// What it had already put into chunks was dropped with the rest; what it would put in after
// must not land either: the backing file holds a prefix of what was written, followed by
// nothing.
TEST_F(WriteBehindTest, AFailureWhileAWriteWaitsForMemoryLeavesNoGap) {
    make(3 * kChunk);  // three chunks per file
    backing.hold();
    const std::string data = pattern(64 * 11, 13);
    ASSERT_EQ(write(data.substr(0, 64), 0), 64);  // chunk 0: to the worker, held there
    ASSERT_TRUE(backing.wait_entered(1));
    std::atomic<ssize_t> result{1};
    std::thread writer([&] {
        // Ten chunks' worth: more than the window, so it must wait for chunk 0's writeout.
        result = write(data.substr(64), 64);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_EQ(result.load(), 1) << "a write of more than the window did not wait";
    backing.fail_from(0, ENOSPC, /*once=*/true);
    backing.open();
    writer.join();
    wb->settle();
    const int error = wb->error();
    EXPECT_EQ(error, -ENOSPC) << "the failure must reach fsync/close";
    bool failed = false;
    std::string landed;
    for (const auto& call : backing.calls()) {
        if (call.result < 0) {
            failed = true;
            continue;
        }
        if (failed)
            landed += " [" + std::to_string(call.offset) + ", " +
                      std::to_string(call.offset + call.length) + ")";
    }
    EXPECT_EQ(landed, "") << "after the writeout of [0, 64) failed, these landed:" << landed
                          << " (the write that waited returned " << result.load() << ")";
    EXPECT_EQ(backing.contents().size(), 0u)
        << "the backing file must hold a prefix of the stream (here: nothing)";
}

// One file holds at most its window: a writer whose chunks are all taken waits for a writeout.
TEST_F(WriteBehindTest, AFileHoldsNoMoreThanItsWindow) {
    make(2 * kChunk);
    backing.hold();
    const std::string data = pattern(64 * 5, 14);
    ASSERT_EQ(write(data.substr(0, 64), 0), 64);
    ASSERT_TRUE(backing.wait_entered(1));
    std::atomic<bool> returned{false};
    std::thread writer([&] {
        EXPECT_EQ(write(data.substr(64), 64), 64 * 4);
        returned = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_FALSE(returned.load()) << "the writer went past its window while nothing was written";
    EXPECT_LE(pool->counters().in_use, 2 * kChunk);
    backing.open();
    writer.join();
    wb->settle();
    EXPECT_LE(pool->counters().peak, 2 * kChunk) << "more than the window was held";
    EXPECT_EQ(difference(backing.contents(), data), "");
}

// The mount's memory is taken (by another file): a write gets a short count (what it could
// take; here nothing), so that the caller writes the rest itself; the pool never goes over
// its limit.
TEST_F(WriteBehindTest, NoMemoryLeftGivesAShortCount) {
    make(4 * kChunk, 8, /*pool_limit=*/2 * kChunk);
    FakeBacking other_backing;
    other_backing.hold();
    {
        WriteBehind other(
            [&](const char* buf, size_t length, uint64_t offset) {
                return other_backing.write(buf, length, offset);
            },
            *pool, *workers, 4 * kChunk, 8);
        // Destroyed before `other`, also when an assertion returns early: its writeout must
        // be able to finish.
        struct OpenOnExit {
            FakeBacking& b;
            ~OpenOnExit() { b.open(); }
        } open_on_exit{other_backing};
        const std::string o = pattern(74, 15);
        ASSERT_EQ(other.write(o.data(), 64, 0, nullptr), 64);
        ASSERT_TRUE(other_backing.wait_entered(1));
        ASSERT_EQ(other.write(o.data() + 64, 10, 64, nullptr), 10);
        EXPECT_EQ(pool->counters().in_use, 2 * kChunk);

        const std::string data = pattern(100, 16);
        EXPECT_EQ(write(data, 0), 0) << "a write took bytes with no memory left";
        EXPECT_EQ(wb->pending(), (std::pair<uint64_t, uint64_t>{0, 0}));
        EXPECT_LE(pool->counters().peak, 2 * kChunk);

        other_backing.open();
        other.settle();
        EXPECT_EQ(write(data, 0), 100) << "memory given back is used again";
        wb->settle();
        EXPECT_EQ(difference(backing.contents(), data), "");
        EXPECT_EQ(difference(other_backing.contents(), o), "");
    }
    EXPECT_LE(pool->counters().peak, 2 * kChunk);
}

TEST_F(WriteBehindTest, DestructionWritesOutWhatIsPending) {
    const std::string data = pattern(90, 17);
    ASSERT_EQ(write(data, 1000), 90);
    wb.reset();
    EXPECT_EQ(difference(backing.contents(), std::string(1000, '\0') + data), "");
}

// A settle() (a read through another descriptor) sees on the file every byte of every write
// that returned before it started, while the writer goes on.
TEST_F(WriteBehindTest, SettleWritesOutEveryWriteThatReturnedBeforeIt) {
    backing.set_delay(std::chrono::microseconds(50));
    const std::string data = pattern(20000, 18);
    std::atomic<uint64_t> returned{0};
    std::atomic<bool> failed{false};
    std::thread writer([&] {
        std::mt19937_64 rng(18);
        for (size_t at = 0; at < data.size() && !failed;) {
            const size_t n = std::min<size_t>(std::uniform_int_distribution<size_t>(1, 90)(rng),
                                              data.size() - at);
            if (write(data.substr(at, n), at) != static_cast<ssize_t>(n))
                failed = true;
            at += n;
            returned = at;
        }
    });
    int checks = 0;
    std::string problem;
    while (returned.load() < data.size() && !failed && problem.empty()) {
        const uint64_t before = returned.load();
        wb->settle();
        const std::string got = backing.contents();
        if (got.size() < before || got.compare(0, before, data, 0, before) != 0)
            problem = "after settle(), the first " + std::to_string(before) +
                      " bytes (written before it) are not all on the file: " +
                      difference(got.substr(0, std::min<size_t>(got.size(), before)),
                                 data.substr(0, before));
        ++checks;
    }
    writer.join();
    EXPECT_FALSE(failed.load()) << "a write returned a short count";
    EXPECT_EQ(problem, "");
    wb->settle();
    EXPECT_EQ(difference(backing.contents(), data), "");
    std::cout << "[ diofs    ] " << checks << " settles while writing" << std::endl;
}

// Several threads write disjoint records through one file (one descriptor shared by threads,
// whose writes libfuse's workers may hand over at the same time): every record must land.
TEST_F(WriteBehindTest, ConcurrentWritersOfOneFileLoseNothing) {
    make(2 * kChunk);
    backing.set_delay(std::chrono::microseconds(100));
    constexpr int kThreads = 4;
    const std::string data = pattern(16000, 19);
    std::mt19937_64 rng(19);
    std::vector<std::vector<std::pair<uint64_t, size_t>>> work(kThreads);
    for (uint64_t at = 0; at < data.size();) {
        const size_t n = std::min<size_t>(std::uniform_int_distribution<size_t>(1, 100)(rng),
                                          data.size() - at);
        work[std::uniform_int_distribution<int>(0, kThreads - 1)(rng)].emplace_back(at, n);
        at += n;
    }
    for (auto& w : work)
        std::shuffle(w.begin(), w.end(), rng);
    std::atomic<int> short_counts{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (auto [at, n] : work[t])
                if (wb->write(data.data() + at, n, at, nullptr) != static_cast<ssize_t>(n))
                    ++short_counts;
        });
    for (auto& t : threads)
        t.join();
    wb->settle();
    EXPECT_EQ(short_counts.load(), 0);
    EXPECT_EQ(wb->error(), 0);
    const std::string got = backing.contents();
    size_t wrong = 0;
    for (size_t i = 0; i < data.size(); ++i)
        wrong += i >= got.size() || got[i] != data[i];
    EXPECT_EQ(difference(got, data), "") << wrong << " bytes of " << data.size() << " wrong";
}

}  // namespace
}  // namespace diofs

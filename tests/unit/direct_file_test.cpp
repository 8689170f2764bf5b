// DirectFile's policy over an in-memory backing file (memory_backing_io.hpp), on 8-byte
// sectors, 16-byte pages and 64-byte chunks: strict and coalesced writes, what another open
// file of the inode sees, reservations and their giving back, sticky writeout errors, setuid
// files, and copies by clone or by bytes (whose reads and writes overlap). No file system is
// involved: everything DirectFile does to the backing file goes through the BackingIo it is
// given.

#include "diofs/counters.hpp"
#include "diofs/io/direct_file.hpp"
#include "diofs/io/streaming.hpp"
#include "memory_backing_io.hpp"
#include "streaming_fakes.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>

namespace diofs {
namespace {

constexpr uint32_t kSector = 8, kPage = 16;
constexpr size_t kTestChunk = 64;

// One backing file and the inode state its open files share.
struct Backed {
    std::shared_ptr<MemoryFile> file = std::make_shared<MemoryFile>(kSector, kPage);
    InodeIo inode;
};

class DirectFileTest : public ::testing::Test {
protected:
    // An open file of `backed`: coalescing and reading ahead, or strict. `io`, if given, is set to
    // its backing I/O (owned by the DirectFile).
    std::unique_ptr<DirectFile> open(Backed& backed, bool coalescing, MemoryBackingIo** io = nullptr,
                                     DirectFile::ModeChanged mode_changed = {}) {
        auto backing = std::make_unique<MemoryBackingIo>(backed.file);
        if (io)
            *io = backing.get();
        return std::make_unique<DirectFile>(std::move(backing), DioAlignment{kSector, kSector},
                                            backed.inode, coalescing ? &streaming : nullptr,
                                            DirectFile::Access{}, "test file",
                                            std::move(mode_changed));
    }

    static ssize_t write(DirectFile& f, const std::string& data, uint64_t offset) {
        return f.write(data.data(), data.size(), offset);
    }
    static std::string read(DirectFile& f, uint64_t offset, size_t length) {
        ReadView view;
        ssize_t n = f.read(offset, length, view);
        EXPECT_GE(n, 0) << "read " << offset << "+" << length;
        return n > 0 ? std::string(view.data, view.length) : std::string();
    }

    // Every test's open files are gone by now: every chunk goes back to the pool (a chunk read
    // ahead goes back with its worker's task, just after the file stopped waiting for it).
    void TearDown() override {
        for (int i = 0; i < 2000 && streaming.pool.counters().in_use != 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        EXPECT_EQ(streaming.pool.counters().in_use, 0u) << "chunks not given back to the pool";
    }

    Backed a, b;  // outlive the Streaming: a file's last writeout may still be on a worker
    Streaming streaming{64 * kTestChunk, 2, 2 * kTestChunk, 4 * kTestChunk, kTestChunk, kSector};
};

// The stats' counters (counters.hpp) of a coalescing, reading-ahead file: chunks written out,
// read requests served from read-ahead or not, open dbopt files. Each test runs in a process
// of its own, but other tests of this one may count too: differences.
TEST_F(DirectFileTest, CountersFollowCoalescingAndReadAhead) {
    Counters& c = counters();
    const uint64_t open_before = c.open_dbopt_files.get();
    const uint64_t chunks_before = c.chunks_written.get();
    const uint64_t hits_before = c.read_ahead_hits.get(), misses_before = c.read_ahead_misses.get();
    {
        auto f = open(a, true);
        EXPECT_EQ(c.open_dbopt_files.get(), open_before + 1);
        const std::string data = pattern(8 * kTestChunk, 3);
        for (size_t off = 0; off < data.size(); off += kPage)
            ASSERT_EQ(write(*f, data.substr(off, kPage), off), static_cast<ssize_t>(kPage));
        ASSERT_EQ(f->flush(), 0);
        EXPECT_EQ(c.chunks_written.get() - chunks_before, 8u);
        for (size_t off = 0; off < data.size(); off += kPage)
            ASSERT_EQ(read(*f, off, kPage), data.substr(off, kPage));
        const uint64_t hits = c.read_ahead_hits.get() - hits_before;
        const uint64_t misses = c.read_ahead_misses.get() - misses_before;
        EXPECT_EQ(hits + misses, data.size() / kPage) << "each read counted once";
        EXPECT_LE(misses, 1u) << "a sequential read misses at its start only";
    }
    EXPECT_EQ(c.open_dbopt_files.get(), open_before);
}

TEST_F(DirectFileTest, StrictWritesAndReadsWithUnalignedHeadsAndTailsMatchAString) {
    MemoryBackingIo* io = nullptr;
    auto f = open(a, false, &io);
    std::mt19937_64 rng(9);
    std::string model;
    for (int op = 0; op < 2000; ++op) {
        const uint64_t offset = rng() % (8 * kPage);
        const size_t length = 1 + rng() % (3 * kPage);
        if (rng() % 2) {
            const std::string data = pattern(length, rng());
            ASSERT_EQ(write(*f, data, offset), static_cast<ssize_t>(length));
            if (model.size() < offset + length)
                model.resize(offset + length, '\0');
            model.replace(offset, length, data);
            // Strict: on the backing file when the write returns.
            ASSERT_EQ(difference(a.file->contents(), model), "") << "after op " << op;
        } else {
            const std::string expect = offset < model.size() ? model.substr(offset, length) : "";
            ASSERT_EQ(read(*f, offset, length), expect) << "read " << offset << "+" << length;
        }
    }
    EXPECT_GT(io->bounce_calls, 0) << "no unaligned head or tail was bounced";
    EXPECT_GT(io->direct_calls, 0) << "no aligned body went direct";
    EXPECT_EQ(io->reserve_calls, 0) << "a strict file reserves nothing";
}

TEST_F(DirectFileTest, AWritePastAnUnalignedEndOfFileDropsTheOldEndOfFilePage) {
    MemoryBackingIo* io = nullptr;
    auto f = open(a, false, &io);
    ASSERT_EQ(write(*f, "12345", 0), 5);
    EXPECT_EQ(io->end_of_file_drops, 0) << "the first write starts at the end of file";
    ASSERT_EQ(write(*f, "abc", 20), 3);
    EXPECT_EQ(io->end_of_file_drops, 1);
    EXPECT_EQ(a.file->contents(), std::string("12345") + std::string(15, '\0') + "abc");
}

TEST_F(DirectFileTest, CoalescedWritesAreHeldUntilAnotherOpenFileReads) {
    MemoryBackingIo* writer_io = nullptr;
    auto writer = open(a, true, &writer_io);
    auto reader = open(a, true);
    const std::string data = pattern(50, 1);  // less than a chunk: nothing is due
    for (size_t at = 0; at < data.size(); at += 10)
        ASSERT_EQ(write(*writer, data.substr(at, 10), at), 10);
    EXPECT_EQ(a.file->contents(), "") << "coalesced bytes reached the backing file early";
    EXPECT_EQ(writer_io->direct_calls + writer_io->bounce_calls, 0);
    EXPECT_GE(writer_io->reserve_calls, 1) << "bytes were held without room";
    EXPECT_EQ(a.inode.pending().end, 50u) << "stat must report the held bytes";
    EXPECT_EQ(read(*reader, 0, 100), data) << "the reader did not see the writer's bytes";
    EXPECT_EQ(a.file->contents(), data);
    EXPECT_EQ(a.inode.pending().end, 0u);
}

TEST_F(DirectFileTest, EnospcFromTheReservationReachesTheWriteThatDoesNotFit) {
    a.file->set_capacity(100);
    auto f = open(a, true);
    const std::string first = pattern(40, 2), second = pattern(80, 3);
    ASSERT_EQ(write(*f, first, 0), 40) << "fits, though the room ahead of it does not";
    EXPECT_EQ(write(*f, second, 40), -ENOSPC) << "ends at 120, past the capacity";
    // The failed write took nothing and the file is not in error: the archiver's retry of a
    // smaller write goes on.
    ASSERT_EQ(write(*f, second.substr(0, 40), 40), 40);
    EXPECT_EQ(f->flush(), 0);
    EXPECT_EQ(difference(a.file->contents(), first + second.substr(0, 40)), "");
}

TEST_F(DirectFileTest, WithoutFallocateBytesAreHeldOnlyWhileTheDiskHasClearlyRoom) {
    a.file->set_reserve_error(-EOPNOTSUPP);
    a.file->set_capacity(10000);
    MemoryBackingIo* io = nullptr;
    auto f = open(a, true, &io);
    ASSERT_EQ(write(*f, "held", 0), 4);
    EXPECT_EQ(a.file->contents(), "") << "room for far more than the mount holds";
    a.file->set_capacity(kTestChunk);  // less than a chunk free: no more holding back
    ASSERT_EQ(write(*f, "+now", 4), 4);
    EXPECT_EQ(a.file->contents(), "held+now") << "held back without room on the disk";
    EXPECT_EQ(io->reserve_calls, 1) << "a filesystem that cannot reserve is asked once";
}

TEST_F(DirectFileTest, AFailedWriteoutMakesEveryLaterWriteSyncAndFlushFail) {
    a.file->fail_writes_from(0, EIO);
    auto f = open(a, true);
    ASSERT_EQ(write(*f, pattern(30, 4), 0), 30) << "taken: the failure comes at the writeout";
    EXPECT_EQ(f->sync(false), -EIO);
    a.file->fail_writes_from(std::nullopt);  // healed: the file stays in error all the same
    EXPECT_EQ(write(*f, pattern(30, 5), 30), -EIO);
    EXPECT_EQ(f->sync(true), -EIO);
    EXPECT_EQ(f->flush(), -EIO);
    EXPECT_EQ(a.file->contents(), "") << "nothing after the failed writeout may land";
    // Another open file of the inode is not in error.
    auto g = open(a, true);
    ASSERT_EQ(write(*g, "ok", 0), 2);
    EXPECT_EQ(g->flush(), 0);
    EXPECT_EQ(a.file->contents(), "ok");
}

TEST_F(DirectFileTest, ASetuidFileIsWrittenThroughAtOnceAndTheKernelIsTold) {
    a.file->set_mode(S_IFREG | 04755);
    int told = 0;
    auto f = open(a, true, nullptr, [&] { ++told; });
    ASSERT_EQ(write(*f, "setuid", 0), 6);
    EXPECT_EQ(a.file->contents(), "setuid") << "held back, the bits would stay until the writeout";
    EXPECT_EQ(told, 1);
    EXPECT_EQ(a.file->mode() & S_ISUID, 0u) << "the model clears setuid on a write";
    // The bits are gone: the next write is held as any other.
    ASSERT_EQ(write(*f, "-held", 6), 5);
    EXPECT_EQ(a.file->contents(), "setuid");
    EXPECT_EQ(told, 1);
    EXPECT_EQ(f->flush(), 0);
    EXPECT_EQ(a.file->contents(), "setuid-held");
}

TEST_F(DirectFileTest, AChmodThroughTheMountIsSeenByTheNextWriteAfterWhatTheFileHolds) {
    int told = 0;
    auto f = open(a, true, nullptr, [&] { ++told; });
    ASSERT_EQ(write(*f, "held", 0), 4);
    ASSERT_EQ(a.file->contents(), "");
    {
        // A chmod through the mount (setattr): every open file writes out and forgets the mode.
        const FileChange change(a.inode);
        a.file->set_mode(S_IFREG | 02775);  // setgid, group execute: a write clears it
    }
    EXPECT_EQ(a.file->contents(), "held");
    ASSERT_EQ(write(*f, "+now", 4), 4);
    EXPECT_EQ(a.file->contents(), "held+now") << "a setgid file's write was held back";
    EXPECT_EQ(told, 1);
}

TEST_F(DirectFileTest, TheLastCloseGivesBackTheRoomReservedPastTheEndAndKeepsTheTime) {
    auto f = open(a, true);
    auto g = open(a, true);
    // The second write continues the stream: it reserves ahead of itself.
    ASSERT_EQ(write(*f, pattern(10, 6), 0), 10);
    ASSERT_EQ(write(*f, pattern(10, 7), 10), 10);
    f->settle();
    ASSERT_EQ(a.file->contents().size(), 20u);
    EXPECT_GT(a.file->allocated_end(), 20u) << "the stream reserved nothing ahead of itself";
    const timespec written = a.file->mtime();

    EXPECT_EQ(g->flush(), 0);
    EXPECT_TRUE(a.file->truncates().empty()) << "given back while another open file may use it";
    g.reset();
    EXPECT_TRUE(a.file->truncates().empty()) << "given back while another open file may use it";

    EXPECT_EQ(f->flush(), 0);
    EXPECT_EQ(a.file->truncates(), std::vector<uint64_t>{20});
    EXPECT_EQ(a.file->allocated_end(), 20u);
    EXPECT_EQ(a.file->mtime().tv_sec, written.tv_sec) << "the truncate's time was left";
    EXPECT_EQ(a.file->contents().size(), 20u);
    f.reset();
    EXPECT_EQ(a.file->truncates().size(), 1u) << "nothing left to give back at release";
}

// A resize through the mount (a truncate, an open with O_TRUNC, fallocate, a clone:
// FileChange::resize) that comes while a close gives back the room reserved past the
// end waits until the give-back has truncated the file to the size it read: landing between
// the two, it would be undone (the file cut back to 20 bytes here). The resize is started
// once the give-back's stat has read the size; it cannot end until the give-back is done, so
// the stat returns after waiting a while in vain (without the lock, the resize ends at once,
// and the give-back then truncates to the size it read).
TEST_F(DirectFileTest, AResizeThroughTheMountIsNeverUndoneByAGiveBack) {
    auto f = open(a, true);
    ASSERT_EQ(write(*f, pattern(10, 6), 0), 10);
    ASSERT_EQ(write(*f, pattern(10, 7), 10), 10);
    f->settle();
    ASSERT_GT(a.file->allocated_end(), 20u) << "the stream reserved nothing ahead of itself";

    MemoryBackingIo other(a.file);  // another descriptor of the file, not reserving
    std::thread resizer;
    std::promise<void> resized;
    {
        // Its pending writes out (none), as setattr does before it truncates.
        FileChange change(a.inode);
        a.file->after_next_stat([&] {
            resizer = std::thread([&] {
                change.resize([&] { return other.truncate(40); });
                resized.set_value();
            });
            resized.get_future().wait_for(std::chrono::milliseconds(200));
        });
        EXPECT_EQ(f->flush(), 0);
        ASSERT_TRUE(resizer.joinable()) << "the give-back read no size";
        resizer.join();
    }
    EXPECT_EQ(a.file->truncates(), (std::vector<uint64_t>{20, 40}))
        << "the resize landed between the give-back's stat and its truncate";
    EXPECT_EQ(a.file->contents().size(), 40u);
}

TEST_F(DirectFileTest, ACopySharesExtentsWhereTheBackingCan) {
    a.file->set_contents(pattern(100, 7));
    MemoryBackingIo* out_io = nullptr;
    auto in = open(a, true);
    auto out = open(b, true, &out_io);
    ASSERT_EQ(DirectFile::copy(*in, 3, *out, 5, 50), 50);
    EXPECT_EQ(out_io->clone_calls, 1);
    EXPECT_EQ(out_io->direct_calls + out_io->bounce_calls, 0) << "bytes were copied after all";
    EXPECT_EQ(out_io->size_change_drops, 1) << "the end-of-file pages after a clone";
    EXPECT_EQ(difference(b.file->contents(), std::string(5, '\0') + a.file->contents().substr(3, 50)),
              "");
}

TEST_F(DirectFileTest, ACopyCopiesTheBytesWhereTheBackingCannotClone) {
    a.file->set_contents(pattern(300, 8));
    b.file->set_clone_supported(false);
    MemoryBackingIo* out_io = nullptr;
    auto in = open(a, true);
    auto out = open(b, true, &out_io);
    ASSERT_EQ(DirectFile::copy(*in, 3, *out, 5, 1000), 297) << "up to the end of the source";
    EXPECT_EQ(out_io->clone_calls, 1);
    EXPECT_EQ(out_io->size_change_drops, 0);
    EXPECT_EQ(out->flush(), 0);
    EXPECT_GT(out_io->direct_calls, 0);
    EXPECT_EQ(difference(b.file->contents(), std::string(5, '\0') + a.file->contents().substr(3)), "");
}

// A copy by bytes (cp on ext4) reads the source ahead and writes the target out on the I/O
// workers, so reads and writes of the device overlap: the copy takes the device's time, not the
// sum of its reads and writes, one after the other.
TEST_F(DirectFileTest, ACopyByBytesReadsAndWritesAtOnce) {
    constexpr size_t kSize = 32 * kTestChunk;
    auto device = std::make_shared<DeviceModel>();
    device->patience = std::chrono::milliseconds(20);
    a.file->set_contents(pattern(kSize, 9));
    a.file->device = b.file->device = device;
    b.file->set_clone_supported(false);
    auto in = open(a, true);
    auto out = open(b, true);
    size_t done = 0;
    while (done < kSize) {
        const ssize_t n = DirectFile::copy(*in, done, *out, done, kSize - done);
        ASSERT_GT(n, 0) << "at " << done;
        done += static_cast<size_t>(n);
    }
    EXPECT_EQ(out->flush(), 0);
    EXPECT_TRUE(device->read_and_write_at_once.load()) << "every read and write came one after the other";
    EXPECT_EQ(difference(b.file->contents(), a.file->contents()), "");
}

}  // namespace
}  // namespace diofs

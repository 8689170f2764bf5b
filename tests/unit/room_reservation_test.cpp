// The room reserved in an inode's backing file (RoomReservation) against an in-memory file
// with a disk capacity (memory_backing_io.hpp): reserving ahead only past the end of the
// file, a stream's room and when it asks again, a failed reservation that accepts nothing,
// the filesystem without fallocate, and the give-back to the right size by the last file.

#include "diofs/io/room_reservation.hpp"

#include "memory_backing_io.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <mutex>
#include <string>

namespace diofs {
namespace {

constexpr uint32_t kSector = 8;
constexpr uint32_t kPage = 16;

class RoomReservationTest : public ::testing::Test {
protected:
    RoomReservation::Room reserve(uint64_t offset, uint64_t length, uint64_t ahead,
                                  const RoomReservation::Holder& holder = {}) {
        return room.reserve(io, offset, length, ahead, holder);
    }

    std::mutex writing;
    RoomReservation room{writing};
    MemoryBackingIo io{kSector, kPage};
    MemoryFile& file = io.file();
};

TEST_F(RoomReservationTest, ReservesAheadOnlyPastTheEndOfTheFile) {
    file.set_contents(std::string(100, 'x'));
    // Inside the file: the range alone (the room ahead could fill a hole the file keeps).
    RoomReservation::Room r = reserve(10, 20, 50);
    EXPECT_EQ(r.error, 0);
    EXPECT_FALSE(r.write_through);
    EXPECT_EQ(r.end, 30u);
    EXPECT_EQ(file.allocated_end(), 30u);
    // Past it: the range and the room ahead.
    r = reserve(90, 20, 50);
    EXPECT_EQ(r.end, 160u);
    EXPECT_EQ(file.allocated_end(), 160u);
}

TEST_F(RoomReservationTest, WhenTheRoomAheadDoesNotFitTheRangeAloneIsReserved) {
    file.set_capacity(120);
    const RoomReservation::Room r = reserve(0, 100, 64);
    EXPECT_EQ(r.error, 0);
    EXPECT_EQ(r.end, 100u);
    EXPECT_EQ(io.reserve_calls, 2);
    EXPECT_EQ(file.allocated_end(), 100u);
}

TEST_F(RoomReservationTest, AFailedReservationReportsTheErrorAndAcceptsNothing) {
    file.set_capacity(100);
    RoomReservation::Stream stream;
    const auto ask = stream.ask(80, 40, 64);
    const RoomReservation::Room r = reserve(ask.offset, ask.length, ask.ahead);
    EXPECT_EQ(r.error, -ENOSPC);
    EXPECT_FALSE(r.write_through);
    EXPECT_EQ(file.allocated_end(), 0u);
    EXPECT_FALSE(stream.covers(80, 40)) << "the stream's room was not asked to grow";
    // The same write once the operator freed space.
    file.set_capacity(200);
    EXPECT_EQ(reserve(ask.offset, ask.length, ask.ahead).error, 0);
}

// A stream asks once for its first write, then only when it leaves its room; continuing, it
// reserves from the room's end and ahead as much again as it holds, up to the limit.
TEST_F(RoomReservationTest, AStreamExtendsItsRoomAheadOfItself) {
    RoomReservation::Stream stream;
    EXPECT_FALSE(stream.covers(0, 4));
    auto ask = stream.ask(0, 4, 64);
    EXPECT_EQ(ask.offset, 0u);
    EXPECT_EQ(ask.length, 4u);
    EXPECT_EQ(ask.ahead, 0u) << "a new stream reserves nothing ahead";
    stream.reserved(0, 4, reserve(ask.offset, ask.length, ask.ahead).end);
    EXPECT_TRUE(stream.covers(0, 4));

    // Each extension reserves from the room's end, as much again as the room, up to 64.
    uint64_t room_end = 4;
    const uint64_t expected_ahead[] = {4, 12, 28, 60, 64, 64};
    for (const uint64_t want : expected_ahead) {
        ASSERT_FALSE(stream.covers(room_end, 4));
        ask = stream.ask(room_end, 4, 64);
        EXPECT_EQ(ask.offset, room_end);
        EXPECT_EQ(ask.length, 4u);
        EXPECT_EQ(ask.ahead, want);
        const RoomReservation::Room r = reserve(ask.offset, ask.length, ask.ahead);
        ASSERT_EQ(r.error, 0);
        EXPECT_EQ(r.end, room_end + 4 + want);
        stream.reserved(room_end, 4, r.end);
        EXPECT_TRUE(stream.covers(room_end, 4 + want)) << "the room ahead is used without asking";
        room_end = r.end;
    }
    EXPECT_EQ(file.allocated_end(), room_end);

    // A write elsewhere starts a new room of its own; forget() makes the next write ask again.
    ask = stream.ask(1000, 4, 64);
    EXPECT_EQ(ask.offset, 1000u);
    EXPECT_EQ(ask.ahead, 0u);
    stream.forget();
    EXPECT_FALSE(stream.covers(0, 4));
}

TEST_F(RoomReservationTest, AFileThatMustNotHoldBytesBackIsWrittenThroughUnreserved) {
    file.set_mode(S_IFREG | S_ISUID | 0755);
    mode_t seen = 0;
    RoomReservation::Holder holder;
    holder.writes_through = [&](mode_t mode) {
        seen = mode;
        return (mode & S_ISUID) != 0;
    };
    const RoomReservation::Room r = reserve(0, 10, 10, holder);
    EXPECT_TRUE(r.write_through);
    EXPECT_EQ(seen, static_cast<mode_t>(S_IFREG | S_ISUID | 0755));
    EXPECT_EQ(io.reserve_calls, 0);
}

// Without fallocate, bytes are held only while the free space is more than what the mount
// holds and the write; fallocate is asked once.
TEST_F(RoomReservationTest, WithoutFallocateTheFreeSpaceDecides) {
    file.set_reserve_error(-EOPNOTSUPP);
    file.set_capacity(1000);
    RoomReservation::Holder holder;
    uint64_t held = 500;
    holder.held = [&] { return held; };
    RoomReservation::Room r = reserve(0, 100, 64, holder);
    EXPECT_EQ(r.error, 0);
    EXPECT_FALSE(r.write_through);
    EXPECT_EQ(r.end, 100u);
    held = 900;
    r = reserve(100, 100, 64, holder);
    EXPECT_TRUE(r.write_through);
    EXPECT_EQ(io.reserve_calls, 1) << "a filesystem that cannot reserve is asked once";
    // Nothing to say what is held: nothing is.
    EXPECT_TRUE(reserve(200, 1, 0).write_through);
}

// The last file that joined gives back what lies past the end of the file, to the size it has
// (not the size when the room was reserved), and keeps the modification time.
TEST_F(RoomReservationTest, TheLastFileGivesBackTheRoomToThePresentSize) {
    room.join();
    room.join();
    ASSERT_EQ(reserve(0, 10, 100).end, 110u);
    file.set_contents(std::string(30, 'x'));  // written since, up to 30
    const timespec written = file.mtime();

    room.give_back(io, false);  // a close while another file is open
    room.give_back(io, true);   // that file's release
    EXPECT_TRUE(file.truncates().empty()) << "given back while another open file may use it";

    room.give_back(io, false);  // the last file's close
    EXPECT_EQ(file.truncates(), std::vector<uint64_t>{30});
    EXPECT_EQ(file.allocated_end(), 30u);
    EXPECT_EQ(file.mtime().tv_sec, written.tv_sec) << "the truncate's time was left";
    EXPECT_EQ(io.end_of_file_drops, 1);
    room.give_back(io, true);
    EXPECT_EQ(file.truncates().size(), 1u) << "nothing left to give back at release";
}

TEST_F(RoomReservationTest, NothingIsGivenBackWhenNothingWasReservedPastTheEnd) {
    room.join();
    file.set_contents(std::string(100, 'x'));
    ASSERT_EQ(reserve(0, 50, 64).end, 50u);  // inside the file
    room.give_back(io, true);
    EXPECT_TRUE(file.truncates().empty());
}

}  // namespace
}  // namespace diofs

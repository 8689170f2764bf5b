// What an inode's attributes show of the writes its open files hold back
// (InodeIo::stat_with_pending), against a fake open file whose writeout finishes while the
// backing file is being stat'ed: the race that once made a GETATTR report a file shorter than
// the writes already acknowledged.

#include "diofs/io/inode_io.hpp"

#include <gtest/gtest.h>

namespace diofs {
namespace {

// An open file holding back writes up to `end`, until its writeout finishes.
class HoldingFile : public InodeIo::Participant {
public:
    void settle() override { end = 0; }
    void settle_overlapping(uint64_t, uint64_t) override {}
    void drop_read_ahead() override {}
    InodeIo::Pending pending() const override { return {end, {1000, 5}}; }
    uint64_t end = 0;
};

struct stat backing_of_size(off_t size) {
    struct stat st{};
    st.st_mode = S_IFREG | 0644;
    st.st_size = size;
    st.st_mtim = {900, 0};
    st.st_ctim = {900, 0};
    return st;
}

// An inode with one open file attached.
class InodeIoAttributes : public ::testing::Test {
protected:
    InodeIoAttributes() { io.attach(&file); }
    ~InodeIoAttributes() override { io.detach(&file); }
    InodeIo io;
    HoldingFile file;
};

TEST_F(InodeIoAttributes, AWriteoutFinishingDuringTheStatIsNotLost) {
    file.end = 8192;
    struct stat st{};
    // The stat reads the backing file before the writeout lands, and the writeout then ends
    // before anything else is looked at: its bytes are in neither the stat nor the pending.
    ASSERT_EQ(io.stat_with_pending(
                  [&](struct stat& s) {
                      s = backing_of_size(4096);
                      file.settle();
                      return 0;
                  },
                  st),
              0);
    EXPECT_EQ(st.st_size, 8192) << "the size of writes acknowledged before the stat";
    EXPECT_EQ(st.st_mtim.tv_sec, 1000);
}

TEST_F(InodeIoAttributes, PendingWritesExtendButNeverShortenTheFile) {
    file.end = 100;
    struct stat st{};
    ASSERT_EQ(io.stat_with_pending([](struct stat& s) { return s = backing_of_size(4096), 0; }, st), 0);
    EXPECT_EQ(st.st_size, 4096);
    file.end = 5000;
    ASSERT_EQ(io.stat_with_pending([](struct stat& s) { return s = backing_of_size(4096), 0; }, st), 0);
    EXPECT_EQ(st.st_size, 5000);
}

TEST_F(InodeIoAttributes, AFailedStatIsReported) {
    struct stat st{};
    EXPECT_EQ(io.stat_with_pending([](struct stat&) { return -ESTALE; }, st), -ESTALE);
}

TEST(InodeIoOpenFiles, KnowsWhetherItEverHadOpenFiles) {
    InodeIo io;
    EXPECT_FALSE(io.had_open_files());
    HoldingFile file;
    io.attach(&file);
    io.detach(&file);
    EXPECT_TRUE(io.had_open_files()) << "its writes may have gone out since an earlier stat";
}

}  // namespace
}  // namespace diofs

// The seam of a file's coherence (file_change.hpp): the steps a FileChange and a FileWrite
// take, in their order, against fake open files and an in-memory backing file, with no file
// system involved; and BackingPages over a real descriptor.

#include "diofs/io/file_change.hpp"
#include "memory_backing_io.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace diofs {
namespace {

// An open file of the inode that writes down, in one log shared by every file, what it was
// asked and whether the inode's change count said a change was under way then.
class LoggingFile : public InodeIo::Participant {
public:
    LoggingFile(std::string name, InodeIo& io, std::vector<std::string>& log)
        : name_(std::move(name)), io_(io), log_(log) {}
    void settle() override { note("settle"); }
    void settle_overlapping(uint64_t begin, uint64_t end) override {
        note("settle " + std::to_string(begin) + "-" + std::to_string(end));
    }
    void drop_read_ahead() override { note("drop"); }
    InodeIo::Pending pending() const override { return {}; }
    void changed() override { note("changed"); }

private:
    void note(const std::string& what) {
        log_.push_back(name_ + " " + what + (io_.quiet_generation() ? "" : " (counted)"));
    }
    const std::string name_;
    InodeIo& io_;
    std::vector<std::string>& log_;
};

// An in-memory backing file that notes the old sizes it is asked to drop the pages of, and
// whose stat can fail.
class DroppingMemoryIo : public MemoryBackingIo {
public:
    using MemoryBackingIo::MemoryBackingIo;
    int stat(Status& out) override {
        if (stat_error)
            return stat_error;
        return MemoryBackingIo::stat(out);
    }
    void drop_size_change_pages(uint64_t old_size) override { dropped_from.push_back(old_size); }

    int stat_error = 0;
    std::vector<uint64_t> dropped_from;
};

struct TestInode {
    InodeIo io;
    std::vector<std::string> log;
    LoggingFile a{"a", io, log}, b{"b", io, log};
    TestInode() {
        io.attach(&a);
        io.attach(&b);
    }
    ~TestInode() {
        io.detach(&a);
        io.detach(&b);
    }
    KernelFile kernel() {
        return {[this] {
            log.push_back(std::string("kernel") + (io.quiet_generation() ? "" : " (counted)"));
        }};
    }
};

TEST(FileChange, SettlesEveryOpenFileBeforeTheChangeIsCountedAndTellsTheKernelLast) {
    TestInode inode;
    {
        FileChange change(inode.io, {}, inode.kernel());
        EXPECT_FALSE(inode.io.quiet_generation().has_value()) << "the change is not counted";
        change.cleared_setid();
        inode.log.push_back("alive");
    }
    ASSERT_TRUE(inode.io.quiet_generation().has_value()) << "the change never finished";
    EXPECT_EQ(inode.log, (std::vector<std::string>{
                             "a settle", "a drop", "a changed", "b settle", "b drop", "b changed",
                             "alive", "kernel (counted)"}));
}

TEST(FileChange, TellsTheKernelNothingUnlessSetidBitsWereCleared) {
    TestInode inode;
    { FileChange change(inode.io, {}, inode.kernel()); }
    for (const std::string& line : inode.log)
        EXPECT_NE(line.rfind("kernel", 0), 0u) << line;
}

TEST(FileChange, ResizesUnderTheWritingLockAndDropsThePagesFromTheSizeBefore) {
    TestInode inode;
    DroppingMemoryIo io(8, 16);
    ASSERT_EQ(io.truncate(30), 0);
    FileChange change(inode.io, BackingPages(io));
    bool locked = false;
    EXPECT_EQ(change.resize([&] {
        locked = !inode.io.writing.try_lock();
        if (!locked)
            inode.io.writing.unlock();
        EXPECT_TRUE(io.dropped_from.empty()) << "dropped before the call";
        return io.truncate(50);
    }), 0);
    EXPECT_TRUE(locked) << "the system call ran without InodeIo::writing";
    EXPECT_EQ(io.dropped_from, std::vector<uint64_t>{30});
}

TEST(FileChange, DropsNothingAfterAFailedCallAndDoesNotCallAfterAFailedSizeRead) {
    TestInode inode;
    DroppingMemoryIo io(8, 16);
    FileChange change(inode.io, BackingPages(io));
    EXPECT_EQ(change.resize([] { return -EPERM; }), -EPERM);
    EXPECT_TRUE(io.dropped_from.empty());

    io.stat_error = -EIO;
    bool called = false;
    EXPECT_EQ(change.resize([&] {
        called = true;
        return 0;
    }), -EIO);
    EXPECT_FALSE(called);
    EXPECT_TRUE(io.dropped_from.empty());
}

TEST(FileChange, WithoutPagesOnlyRunsTheCall) {
    TestInode inode;
    FileChange change(inode.io);
    EXPECT_EQ(change.resize([] { return 7; }), 7) << "a descriptor is passed back";
}

TEST(FileWrite, SettlesTheOthersOverlappingAndDropsEveryReadAheadTheWritersToo) {
    TestInode inode;
    {
        FileWrite write(inode.io, inode.a, 100, 200, inode.kernel());
        inode.log.push_back("alive");
    }
    EXPECT_EQ(inode.log,
              (std::vector<std::string>{"b settle 100-200", "b drop", "a drop", "alive"}));
}

TEST(FileWrite, TellsTheKernelAtTheEndWhenTheWriteClearedSetidBits) {
    TestInode inode;
    {
        FileWrite write(inode.io, inode.a, 0, 1, inode.kernel());
        write.cleared_setid();
        inode.log.push_back("alive");
    }
    EXPECT_EQ(inode.log.back(), "kernel");
    EXPECT_EQ(inode.log.end()[-2], "alive");
}

// Over a real descriptor: the size is the file's, the drops run, and a descriptor opened for
// the purpose is closed with the BackingPages.
TEST(BackingPages, ReadsTheSizeThroughADescriptorAndClosesOneItOwns) {
    char path[] = "/tmp/diofs-file-change-XXXXXX";
    const int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ::unlink(path);
    ASSERT_EQ(::pwrite(fd, "0123456789", 10, 0), 10);
    const long page = ::sysconf(_SC_PAGESIZE);
    {
        BackingPages borrowed(fd, static_cast<size_t>(page));
        ASSERT_TRUE(borrowed);
        uint64_t size = 0;
        EXPECT_EQ(borrowed.size(size), 0);
        EXPECT_EQ(size, 10u);
        borrowed.drop(10, 2, 3);
    }
    ASSERT_NE(::fcntl(fd, F_GETFD), -1) << "a borrowed descriptor was closed";
    const int owned_fd = ::dup(fd);
    ASSERT_GE(owned_fd, 0);
    {
        BackingPages owned(UniqueFd(owned_fd), static_cast<size_t>(page));
        uint64_t size = 0;
        EXPECT_EQ(owned.size(size), 0);
        EXPECT_EQ(size, 10u);
    }
    EXPECT_EQ(::fcntl(owned_fd, F_GETFD), -1) << "an owned descriptor was left open";
    ::close(fd);
    EXPECT_FALSE(BackingPages());
}

}  // namespace
}  // namespace diofs

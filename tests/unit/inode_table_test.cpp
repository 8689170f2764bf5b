#include "temp_dir.hpp"

#include "diofs/inode_table.hpp"
#include "diofs/logging.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace diofs {
namespace {

struct stat fake_stat(dev_t dev, ino_t ino, mode_t mode = S_IFREG | 0644) {
    struct stat st{};
    st.st_dev = dev;
    st.st_ino = ino;
    st.st_mode = mode;
    return st;
}

UniqueFd some_fd() { return UniqueFd(::open("/", O_PATH | O_CLOEXEC)); }

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(InodeTable, SameKeySharesOneEntry) {
    InodeTable table;
    Inode& a = table.acquire(some_fd(), fake_stat(1, 10), std::nullopt);
    UniqueFd second = some_fd();
    int second_fd = second.get();
    Inode& b = table.acquire(std::move(second), fake_stat(1, 10), std::nullopt);
    EXPECT_EQ(&a, &b);
    EXPECT_EQ(a.nlookup, 2u);
    EXPECT_EQ(table.size(), 1u);
    EXPECT_FALSE(is_open(second_fd)) << "the duplicate descriptor must be closed";
    EXPECT_EQ(a.type, static_cast<mode_t>(S_IFREG));
}

TEST(InodeTable, DeviceIsPartOfTheKey) {
    InodeTable table;
    Inode& a = table.acquire(some_fd(), fake_stat(1, 10), std::nullopt);
    Inode& b = table.acquire(some_fd(), fake_stat(2, 10), std::nullopt);
    EXPECT_NE(&a, &b);
    EXPECT_EQ(table.size(), 2u);
}

TEST(InodeTable, ForgetCountsDownAndFreesAtZero) {
    InodeTable table;
    Inode* inode = nullptr;
    for (int i = 0; i < 3; ++i)
        inode = &table.acquire(some_fd(), fake_stat(1, 7), std::nullopt);
    PathFd held;
    ASSERT_EQ(table.path_fd(*inode, held), 0);
    int fd = held.get();
    held = PathFd();
    EXPECT_EQ(table.forget(*inode, 2), 1u);
    EXPECT_EQ(table.size(), 1u);
    EXPECT_TRUE(is_open(fd));
    EXPECT_EQ(table.forget(*inode, 1), 0u);
    EXPECT_EQ(table.size(), 0u);
    EXPECT_FALSE(is_open(fd)) << "the entry's descriptor is closed with it";
}

TEST(InodeTable, ReacquireAfterForgetMakesANewEntry) {
    InodeTable table;
    Inode& a = table.acquire(some_fd(), fake_stat(1, 5), std::nullopt);
    table.forget(a, 1);
    Inode& b = table.acquire(some_fd(), fake_stat(1, 5), std::nullopt);
    EXPECT_EQ(b.nlookup, 1u);
    EXPECT_EQ(table.size(), 1u);
}

// The writeback window: the kernel keeps its own sizes, so a file changed around the mount
// gets a new entry (a new node id, a new kernel inode) when no open file of the mount has it.
TEST(InodeTable, AFileChangedAroundTheMountGetsANewEntryWhenNotOpen) {
    InodeTable table;
    table.kernel_keeps_sizes();
    struct stat st = fake_stat(1, 9);
    st.st_size = 100;
    Inode& a = table.acquire(some_fd(), st, std::nullopt);
    a.view.told(st);
    EXPECT_EQ(&table.acquire(some_fd(), st, std::nullopt), &a) << "unchanged: the same entry";
    st.st_size = 300;  // the kernel wrote 200 bytes more through the mount
    st.st_mtim.tv_sec += 1;
    a.view.wrote(300, [&](struct stat& now) {
        now = st;
        return 0;
    });
    EXPECT_EQ(&table.acquire(some_fd(), st, std::nullopt), &a) << "the mount's own change";
    a.view.opened();
    st.st_size = 500;  // changed around the mount while open here: the kernel's inode stays
    EXPECT_EQ(&table.acquire(some_fd(), st, std::nullopt), &a);
    a.view.closed();
    Inode& b = table.acquire(some_fd(), st, std::nullopt);
    EXPECT_NE(&b, &a) << "changed around the mount, not open: a new entry";
    EXPECT_EQ(&table.acquire(some_fd(), st, std::nullopt), &b);
    EXPECT_EQ(table.size(), 2u) << "the old entry stays until the kernel forgets it";
    EXPECT_EQ(table.forget(a, 4), 0u);
    EXPECT_EQ(table.forget(b, 2), 0u);
    EXPECT_EQ(table.size(), 0u);
}

// The kernel writes its own times back (a SETATTR) and a WRITE of its writeback may come
// after that: the backing file's time is then later than the kernel's, and that is the mount's
// own change, not one around it.
TEST(InodeTable, AWriteBackAfterTheKernelsTimesIsTheMountsOwnChange) {
    InodeTable table;
    table.kernel_keeps_sizes();
    struct stat st = fake_stat(1, 9);
    Inode& a = table.acquire(some_fd(), st, std::nullopt);
    a.view.told(st);
    st.st_mtim.tv_sec += 5;  // the times the kernel wrote back
    a.view.set(st, false);
    st.st_size = 4096;  // then a WRITE of its writeback: the backing file's time moves on
    st.st_mtim.tv_sec += 1;
    a.view.wrote(4096, [&](struct stat& now) {
        now = st;
        return 0;
    });
    EXPECT_EQ(&table.acquire(some_fd(), st, std::nullopt), &a);
    st.st_mtim.tv_nsec += 1;  // touched around the mount
    Inode& b = table.acquire(some_fd(), st, std::nullopt);
    EXPECT_NE(&b, &a);
    EXPECT_EQ(table.forget(a, 2), 0u);
    EXPECT_EQ(table.forget(b, 1), 0u);
}

TEST(InodeTable, WithoutTheWritebackWindowAChangedFileKeepsItsEntry) {
    InodeTable table;
    struct stat st = fake_stat(1, 9);
    Inode& a = table.acquire(some_fd(), st, std::nullopt);
    a.view.told(st);
    st.st_size = 12345;
    EXPECT_EQ(&table.acquire(some_fd(), st, std::nullopt), &a);
    EXPECT_EQ(table.forget(a, 2), 0u);
}

TEST(InodeTableDeathTest, ForgettingMoreThanHeldAborts) {
    InodeTable table;
    Inode& a = table.acquire(some_fd(), fake_stat(1, 5), std::nullopt);
    // The daemon's logger writes to stderr, where the death test looks.
    EXPECT_DEATH(
        {
            log_to_stderr(spdlog::level::info, false);
            table.forget(a, 2);
        },
        "kernel forgets 2 references but holds only 1");
}

TEST(InodeTable, ConcurrentAcquireAndForgetBalance) {
    InodeTable table;
    constexpr int kThreads = 4, kRounds = 2000, kKeys = 8;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < kRounds; ++i) {
                Inode& inode = table.acquire(some_fd(), fake_stat(1, (i + t) % kKeys), std::nullopt);
                table.forget(inode, 1);
            }
        });
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(table.size(), 0u);
}

// Real files in a private temporary directory, with their handles (tmpfs and ext4 give them).
class InodeTableHandles : public ::testing::Test {
protected:
    void SetUp() override {
        UniqueFd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        ASSERT_GE(dir.get(), 0);
        struct stat st;
        ASSERT_EQ(::fstat(dir.get(), &st), 0);
        dev_ = st.st_dev;
        table_.add_mount_fd(dev_, std::move(dir));
    }

    // Makes `name` and acquires it, as a lookup does.
    Inode& make(const std::string& name, struct stat* out = nullptr) {
        const std::string path = dir_ + "/" + name;
        ::close(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        UniqueFd fd(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
        struct stat st;
        EXPECT_EQ(::fstatat(fd.get(), "", &st, AT_EMPTY_PATH), 0);
        if (out)
            *out = st;
        auto handle = FileHandle::of(fd.get());
        EXPECT_TRUE(handle) << "no file handle on " << dir_;
        return table_.acquire(std::move(fd), st, std::move(handle));
    }

    TempDir tmp_{"inode-table"};
    const std::string dir_ = tmp_.path();
    dev_t dev_ = 0;
    InodeTable table_{2};  // two cached descriptors at most
};

TEST_F(InodeTableHandles, KeepsAtMostItsCacheOfDescriptors) {
    std::vector<Inode*> inodes;
    for (int i = 0; i < 5; ++i)
        inodes.push_back(&make("f" + std::to_string(i)));
    EXPECT_EQ(table_.size(), 5u);
    EXPECT_EQ(table_.descriptors(), 3u) << "two cached and the mount descriptor";
    for (Inode* inode : inodes) {
        PathFd fd;
        ASSERT_EQ(table_.path_fd(*inode, fd), 0) << "reopened from its handle";
        struct stat st;
        ASSERT_EQ(::fstatat(fd.get(), "", &st, AT_EMPTY_PATH), 0);
        EXPECT_EQ(st.st_ino, inode->ino);
    }
    EXPECT_EQ(table_.descriptors(), 3u);
}

TEST_F(InodeTableHandles, ReleaseClosesTheCachedDescriptor) {
    struct stat st;
    Inode& inode = make("f", &st);
    int fd;
    {
        PathFd held;
        ASSERT_EQ(table_.path_fd(inode, held), 0);
        fd = held.get();
    }
    table_.release_descriptor(st.st_dev, st.st_ino);
    EXPECT_FALSE(is_open(fd)) << "the cached descriptor outlived the release";
    PathFd again;
    EXPECT_EQ(table_.path_fd(inode, again), 0) << "reopened from its handle";
}

TEST_F(InodeTableHandles, ADeletedInodeIsStale) {
    struct stat st;
    Inode& inode = make("f", &st);
    ASSERT_EQ(::unlink((dir_ + "/f").c_str()), 0);
    table_.release_descriptor(st.st_dev, st.st_ino);
    PathFd fd;
    EXPECT_EQ(table_.path_fd(inode, fd), -ESTALE);
}

TEST_F(InodeTableHandles, AReusedNumberGetsANewEntry) {
    struct stat st;
    Inode& old = make("f", &st);
    FileHandle other = *old.handle;
    other.bytes.back() ^= 0xff;  // another generation of the same number
    Inode& fresh = table_.acquire(some_fd(), st, other);
    EXPECT_NE(&old, &fresh);
    EXPECT_EQ(table_.size(), 2u) << "the old entry stays until the kernel forgets it";
    EXPECT_EQ(table_.forget(old, 1), 0u);
    EXPECT_EQ(table_.forget(fresh, 1), 0u);
    EXPECT_EQ(table_.size(), 0u);
}

// Requests taking descriptors while lookups evict them and removals let them go: every
// descriptor taken stays open and names its inode for as long as it is held.
TEST_F(InodeTableHandles, ConcurrentUseEvictionAndRelease) {
    constexpr int kFiles = 8, kThreads = 4, kRounds = 2000;
    std::vector<struct stat> st(kFiles);
    std::vector<Inode*> inodes;
    for (int i = 0; i < kFiles; ++i)
        inodes.push_back(&make("f" + std::to_string(i), &st[i]));
    std::atomic<int> wrong = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            for (int r = 0; r < kRounds; ++r) {
                const int i = (r * 7 + t) % kFiles;
                if (t == 0 && r % 5 == 0) {
                    table_.release_descriptor(st[i].st_dev, st[i].st_ino);
                    continue;
                }
                PathFd fd;
                struct stat now;
                if (table_.path_fd(*inodes[i], fd) != 0 ||
                    ::fstatat(fd.get(), "", &now, AT_EMPTY_PATH) != 0 || now.st_ino != st[i].st_ino)
                    ++wrong;
            }
        });
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(wrong.load(), 0);
    EXPECT_LE(table_.descriptors(), 3u);
    for (Inode* inode : inodes)
        EXPECT_EQ(table_.forget(*inode, 1), 0u);
    EXPECT_EQ(table_.descriptors(), 1u) << "only the mount descriptor is left";
}

}  // namespace
}  // namespace diofs

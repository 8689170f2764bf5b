#include "diofs/inode_table.hpp"
#include "diofs/logging.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>

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
    Inode& a = table.acquire(some_fd(), fake_stat(1, 10));
    UniqueFd second = some_fd();
    int second_fd = second.get();
    Inode& b = table.acquire(std::move(second), fake_stat(1, 10));
    EXPECT_EQ(&a, &b);
    EXPECT_EQ(a.nlookup, 2u);
    EXPECT_EQ(table.size(), 1u);
    EXPECT_FALSE(is_open(second_fd)) << "the duplicate descriptor must be closed";
    EXPECT_EQ(a.type, static_cast<mode_t>(S_IFREG));
}

TEST(InodeTable, DeviceIsPartOfTheKey) {
    InodeTable table;
    Inode& a = table.acquire(some_fd(), fake_stat(1, 10));
    Inode& b = table.acquire(some_fd(), fake_stat(2, 10));
    EXPECT_NE(&a, &b);
    EXPECT_EQ(table.size(), 2u);
}

TEST(InodeTable, ForgetCountsDownAndFreesAtZero) {
    InodeTable table;
    Inode* inode = nullptr;
    for (int i = 0; i < 3; ++i)
        inode = &table.acquire(some_fd(), fake_stat(1, 7));
    int fd = inode->path_fd.get();
    EXPECT_EQ(table.forget(*inode, 2), 1u);
    EXPECT_EQ(table.size(), 1u);
    EXPECT_TRUE(is_open(fd));
    EXPECT_EQ(table.forget(*inode, 1), 0u);
    EXPECT_EQ(table.size(), 0u);
    EXPECT_FALSE(is_open(fd)) << "the entry's descriptor is closed with it";
}

TEST(InodeTable, ReacquireAfterForgetMakesANewEntry) {
    InodeTable table;
    Inode& a = table.acquire(some_fd(), fake_stat(1, 5));
    table.forget(a, 1);
    Inode& b = table.acquire(some_fd(), fake_stat(1, 5));
    EXPECT_EQ(b.nlookup, 1u);
    EXPECT_EQ(table.size(), 1u);
}

TEST(InodeTableDeathTest, ForgettingMoreThanHeldAborts) {
    InodeTable table;
    Inode& a = table.acquire(some_fd(), fake_stat(1, 5));
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
                Inode& inode = table.acquire(some_fd(), fake_stat(1, (i + t) % kKeys));
                table.forget(inode, 1);
            }
        });
    for (auto& t : threads)
        t.join();
    EXPECT_EQ(table.size(), 0u);
}

}  // namespace
}  // namespace diofs

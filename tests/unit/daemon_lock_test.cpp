// DaemonLock (the lock umount.fuse.diofs waits on), in a temporary directory instead of
// /run/diofs: held while it lives, by the file that is still there, and gone with the file.

#include "temp_dir.hpp"

#include "diofs/daemon_lock.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace diofs {
namespace {

using namespace std::chrono_literals;

class DaemonLockTest : public ::testing::Test {
protected:

    // What the helper does: a shared lock on the file, without waiting.
    static bool helper_could_lock(const std::string& path) {
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return true;  // no file: nothing to wait for
        bool locked = ::flock(fd, LOCK_SH | LOCK_NB) == 0;
        ::close(fd);
        return locked;
    }

    TempDir top_{"daemon-lock"};
    const std::string dir_ = top_.path() + "/run";  // created by take()
    const dev_t device_ = ::makedev(0, 63);
};

TEST_F(DaemonLockTest, PathIsTheMountsDeviceAsMountinfoShowsIt) {
    EXPECT_EQ("/run/diofs/0:63.lock", DaemonLock::path_for(device_));
    EXPECT_EQ("/x/259:1048575.lock", DaemonLock::path_for(::makedev(259, 1048575), "/x"));
}

TEST_F(DaemonLockTest, HeldWithThePidWhileItLivesAndRemovedAfter) {
    const std::string path = DaemonLock::path_for(device_, dir_);
    {
        std::optional<DaemonLock> lock = DaemonLock::take(device_, dir_);
        ASSERT_TRUE(lock);
        EXPECT_EQ(path, lock->path());
        std::string pid;
        std::ifstream(path) >> pid;
        EXPECT_EQ(std::to_string(::getpid()), pid);
        EXPECT_FALSE(helper_could_lock(path));
        std::optional<DaemonLock> moved = std::move(lock);
        EXPECT_FALSE(helper_could_lock(path));
    }
    EXPECT_FALSE(std::filesystem::exists(path));
    EXPECT_TRUE(helper_could_lock(path));
}

TEST_F(DaemonLockTest, ALeftoverFileOfAKilledDaemonIsTakenOver) {
    ASSERT_EQ(0, ::mkdir(dir_.c_str(), 0755));
    const std::string path = DaemonLock::path_for(device_, dir_);
    std::ofstream(path) << "99999999\n";
    std::optional<DaemonLock> lock = DaemonLock::take(device_, dir_, 0ms);
    ASSERT_TRUE(lock);
    EXPECT_FALSE(helper_could_lock(path));
}

TEST_F(DaemonLockTest, HeldElsewhereItWaitsThenGoesWithout) {
    std::optional<DaemonLock> first = DaemonLock::take(device_, dir_);
    ASSERT_TRUE(first);
    // Another open file description conflicts, as another process's would.
    EXPECT_FALSE(DaemonLock::take(device_, dir_, 50ms));
    EXPECT_TRUE(std::filesystem::exists(first->path()));
}

TEST_F(DaemonLockTest, NoRoomForTheDirectoryMeansNoLock) {
    EXPECT_FALSE(DaemonLock::take(device_, top_.path() + "/missing/run"));
}

}  // namespace
}  // namespace diofs

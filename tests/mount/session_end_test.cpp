// The daemon told to stop (SIGTERM, as a service manager stops it) while programs still hold
// files and directories open in the mount. The kernel never sends the releases of those
// handles, so the daemon closes them itself, as release would: what dbopt holds back of a file
// reaches the backing file before the mount goes, the daemon says how many it closed and exits
// with status 0, and in a sanitizer build (DIOFS_SANITIZE) without a leak report.

#include "dbopt_support.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace diofs_test {
namespace {

struct DirCloser {
    void operator()(DIR* dir) const { ::closedir(dir); }
};

class SessionEnd : public ::testing::TestWithParam<std::vector<std::string>> {};

// A file created and written (under dbopt: 300,000 bytes held back, in the kernel's dirty pages
// under the writeback window, the default of a libfuse 3.16+ build, or in the daemon, less than
// one chunk, with writeback=0), a
// file opened and read (under dbopt: read-ahead holds chunks of it) and a directory opened and
// listed, all still open when SIGTERM comes.
TEST_P(SessionEnd, SigtermWithFilesOpenClosesThemAndKeepsTheirBytes) {
    DIOFS_REQUIRE_FUSE();
    ::umask(022);
    DiofsMount m(GetParam());
    ASSERT_EQ(m.start(), "");
    const std::string mnt = m.mnt(), backing = m.backing();
    ASSERT_EQ(::mkdir((backing + "/d").c_str(), 0755), 0) << errno_name(errno);
    const std::string read_data = random_bytes_from<std::mt19937_64>(3 << 20, 61);
    ASSERT_EQ(write_whole(backing + "/read", read_data), 0);

    const std::string data = random_bytes_from<std::mt19937_64>(300000, 62);
    Fd written(::open((mnt + "/written").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ASSERT_TRUE(written) << errno_name(errno);
    for (size_t at = 0; at < data.size(); at += 100000)
        ASSERT_EQ(::write(written.get(), data.data() + at, 100000), 100000) << errno_name(errno);
    Fd read(::open((mnt + "/read").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(read) << errno_name(errno);
    std::string head(65536, '\0');
    ASSERT_EQ(::read(read.get(), head.data(), head.size()), 65536) << errno_name(errno);
    EXPECT_EQ(head, read_data.substr(0, head.size()));
    std::unique_ptr<DIR, DirCloser> dir(::opendir((mnt + "/d").c_str()));
    ASSERT_TRUE(dir) << errno_name(errno);
    ASSERT_NE(::readdir(dir.get()), nullptr) << errno_name(errno);
    const bool coalescing = GetParam() == std::vector<std::string>{"dbopt", "writeback=0"};
    if (coalescing) {
        struct stat st{};
        ASSERT_EQ(::stat((backing + "/written").c_str(), &st), 0);
        EXPECT_LT(st.st_size, static_cast<off_t>(data.size())) << "the writes were not held back";
    }

    EXPECT_EQ(m.terminate(), "exited with status 0") << "its log:\n" << m.log_tail();
    EXPECT_FALSE(m.is_mounted()) << "the daemon ended and left its mount";
    EXPECT_EQ(first_difference(read_direct(backing + "/written").value_or("<unreadable>"), data),
              "")
        << "the backing file of the file still open";
    EXPECT_NE(m.log().find("closed 3 files and directories the kernel still held open"),
              std::string::npos)
        << "the daemon did not close the two files and the directory left open; its log:\n"
        << m.log_tail();
    // The connection is gone: what the mount's descriptors say when closed does not matter.
    (void)written.close();
    (void)read.close();
    dir.reset();
    EXPECT_EQ(m.stop(), "");
}

INSTANTIATE_TEST_SUITE_P(Mounts, SessionEnd,
                         ::testing::Values(std::vector<std::string>{},
                                           std::vector<std::string>{"dbopt"},
                                           std::vector<std::string>{"dbopt", "strict"},
                                           std::vector<std::string>{"dbopt", "writeback=0"}),
                         options_name);

}  // namespace
}  // namespace diofs_test

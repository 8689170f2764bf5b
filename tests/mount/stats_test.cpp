// The stats of a mount (stats.hpp): user.diofs.stats of the mount's root, `diofs stats` and
// SIGUSR1's log line, under a workload whose numbers are known: bytes written and read through
// the mount, split by way (direct, bounced, buffered fallback, passthrough), read-ahead hits,
// coalesced chunks, the pool, open dbopt files, page-cache drops. Each test has a mount of its
// own, so the counters start at 0.

#include "dbopt_support.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/xattr.h>

#include <chrono>
#include <string>
#include <thread>

using namespace diofs_test;
using Json = nlohmann::json;

namespace {

constexpr uint64_t kMiB = 1 << 20;

class Stats : public DbOptTest {
protected:
    // The stats, as getfattr reads them: the size first, then the value.
    Json stats() {
        const std::string root = mount().mnt();
        ssize_t size = ::getxattr(root.c_str(), "user.diofs.stats", nullptr, 0);
        EXPECT_GT(size, 0) << errno_name(errno);
        if (size <= 0)
            return Json::object();
        std::string value(static_cast<size_t>(size), '\0');
        ssize_t n = ::getxattr(root.c_str(), "user.diofs.stats", value.data(), value.size());
        EXPECT_GT(n, 0) << errno_name(errno);
        if (n <= 0)
            return Json::object();
        value.resize(static_cast<size_t>(n));
        return Json::parse(value);
    }

    // The stats once every file is released (the kernel sends RELEASE after close() returns).
    Json stats_when_closed() {
        Json j;
        for (int i = 0; i < 200; ++i) {
            j = stats();
            if (j.value("open_dbopt_files", 1u) == 0 && j["pool"].value("in_use", 1u) == 0)
                break;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return j;
    }

    // Writes `size` bytes to `name` through the mount in 1 MiB write() calls, checking
    // open_dbopt_files while it is open.
    void write_file(const std::string& name, uint64_t size, uint64_t open_dbopt_files) {
        const std::string data = random_bytes_from<std::mt19937_64>(size, 11);
        Fd fd(::open(mnt(name).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        ASSERT_TRUE(fd) << errno_name(errno);
        EXPECT_EQ(stats()["open_dbopt_files"], open_dbopt_files);
        for (uint64_t done = 0; done < size;) {
            const size_t n = static_cast<size_t>(std::min(kMiB, size - done));
            ASSERT_EQ(::write(fd.get(), data.data() + done, n), static_cast<ssize_t>(n))
                << errno_name(errno);
            done += n;
        }
        ASSERT_EQ(fd.close(), success());
    }

    // Reads `name` through the mount in 64 KiB read() calls; its size.
    uint64_t read_file(const std::string& name) {
        Fd fd(::open(mnt(name).c_str(), O_RDONLY | O_CLOEXEC));
        EXPECT_TRUE(fd) << errno_name(errno);
        std::string buf(64 << 10, '\0');
        uint64_t total = 0;
        for (ssize_t n; (n = ::read(fd.get(), buf.data(), buf.size())) > 0;)
            total += static_cast<uint64_t>(n);
        return total;
    }
};

constexpr uint64_t kFileSize = 8 * kMiB + 100;

// The default dbopt mount: 8 MiB and 100 bytes written in 1 MiB writes, then read back.
TEST_F(Stats, DboptCountsEveryWay) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt"});
    Json j = stats();
    EXPECT_EQ(j["open_dbopt_files"], 0);
    EXPECT_EQ(j["written"]["bytes"], 0);
    EXPECT_EQ(j["options"]["dbopt"], true);
    EXPECT_EQ(j["options"]["strict"], false);
    EXPECT_EQ(j["options"]["dbopt_mem"], 32 * kMiB);
    // The writeback window: on by default where the build can have it (libfuse 3.16+), as
    // root, which may bound it.
#if DIOFS_LIBFUSE_MINOR >= 16
    EXPECT_EQ(j["options"]["writeback"], ::geteuid() == 0 ? 8 * kMiB : 0u);
#else
    EXPECT_EQ(j["options"]["writeback"], 0u);
#endif
    const bool window = j["options"]["writeback"].get<uint64_t>() > 0;
    EXPECT_EQ(j["mount"]["pid"], mount().pid());
    EXPECT_EQ(j["mount"]["mountpoint"], mount().mnt());
    ASSERT_EQ(j["devices"].size(), 1u) << j.dump();
    EXPECT_EQ(j["devices"][0]["direct_io"], true);
    EXPECT_GE(j["devices"][0]["alignment"], 512);

    ASSERT_NO_FATAL_FAILURE(write_file("f", kFileSize, 1));
    j = stats_when_closed();
    const Json& w = j["written"];
    EXPECT_GE(w["requests"], 9) << j.dump();
    EXPECT_EQ(w["bytes"], kFileSize) << "every byte written once through the mount";
    // The 100 bytes past the last whole chunk go through the bounce page, the rest direct.
    EXPECT_EQ(w["direct"].get<uint64_t>() + w["bounced"].get<uint64_t>(), kFileSize) << j.dump();
    EXPECT_GT(w["bounced"], 0);
    EXPECT_LT(w["bounced"], 4096);
    EXPECT_EQ(w["buffered_fallback"], 0);
    EXPECT_EQ(w["passthrough"], 0);
    // The window's WRITEs go to the device before their replies (design.md, "Not held
    // back"); without it the 1 MiB writes are coalesced into chunks of the pool.
    if (window) {
        EXPECT_EQ(j["coalescing"]["chunks_written"], 0) << j.dump();
    } else {
        EXPECT_GE(j["coalescing"]["chunks_written"], 8) << "coalesced 1 MiB chunks";
        EXPECT_GT(j["pool"]["peak"], 0);
    }
    EXPECT_EQ(j["coalescing"]["writeout_errors"], 0);
    EXPECT_GT(j["page_cache"]["backing_drops"], 0) << "the bounce page is dropped";
    EXPECT_EQ(j["page_cache"]["resident_after_drop"], 0);
    EXPECT_EQ(j["open_dbopt_files"], 0);
    EXPECT_EQ(j["pool"]["in_use"], 0);
    EXPECT_LE(j["pool"]["peak"], j["pool"]["limit"]);
    EXPECT_EQ(j["pool"]["limit"], 32 * kMiB);

    EXPECT_EQ(read_file("f"), kFileSize);
    j = stats_when_closed();
    const Json& r = j["read"];
    EXPECT_EQ(r["bytes"], kFileSize) << "each byte read once through the mount: " << j.dump();
    // Read ahead in whole aligned chunks: at least the file, at most one chunk more.
    EXPECT_GE(r["direct"], kFileSize);
    EXPECT_LE(r["direct"], kFileSize + kMiB);
    EXPECT_EQ(r["passthrough"], 0);
    EXPECT_GT(j["read_ahead"]["hits"], 0);
    EXPECT_LE(j["read_ahead"]["misses"], 2) << "a sequential read misses at its start only";
    EXPECT_EQ(r["requests"].get<uint64_t>(),
              j["read_ahead"]["hits"].get<uint64_t>() + j["read_ahead"]["misses"].get<uint64_t>());
    EXPECT_GT(j["page_cache"]["window_drops"], 0) << "the kernel's window is dropped behind";
    EXPECT_EQ(j["page_cache"]["resident_after_drop"], 0);
}

// Files that end short of the kernel's last request (nearly every file: its requests are whole
// pages, 128 KiB at most) are read from the backing once, byte for byte: the read-ahead chunk
// that found the end of the file answers that request. Left to a direct read of its own, the
// last request read the file's end again (grep -r of small files: 1.6 times their bytes, issue
// 19). Sizes: under a page, whole pages, past one request, past one chunk.
TEST_F(Stats, FilesAreReadFromTheBackingOnce) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt"});
    uint64_t total = 0;
    for (uint64_t size : {uint64_t{100}, uint64_t{8192}, uint64_t{200037}, kMiB + 100}) {
        const std::string name = "f" + std::to_string(size);
        ASSERT_EQ(write_whole(backing(name), random_bytes_from<std::mt19937_64>(size, size)), 0)
            << errno_name(errno);
        total += size;
    }
    const uint64_t before = stats_when_closed()["read"]["direct"].get<uint64_t>();
    for (uint64_t size : {uint64_t{100}, uint64_t{8192}, uint64_t{200037}, kMiB + 100})
        EXPECT_EQ(read_file("f" + std::to_string(size)), size);
    const Json j = stats_when_closed();
    EXPECT_EQ(j["read"]["bytes"], total) << j.dump();
    EXPECT_EQ(j["read"]["direct"].get<uint64_t>() - before, total)
        << "bytes read from the backing other than the files' own, once: " << j.dump();
    EXPECT_EQ(j["read_ahead"]["misses"], 0) << "a request read the file again: " << j.dump();
}

// strict: every request one direct transfer, no read-ahead and no coalescing.
TEST_F(Stats, StrictReadsAndWritesDirectOnly) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "strict"});
    ASSERT_NO_FATAL_FAILURE(write_file("f", kFileSize, 1));
    EXPECT_EQ(read_file("f"), kFileSize);
    Json j = stats_when_closed();
    EXPECT_EQ(j["written"]["bytes"], kFileSize);
    EXPECT_EQ(j["written"]["direct"].get<uint64_t>() + j["written"]["bounced"].get<uint64_t>(),
              kFileSize);
    EXPECT_EQ(j["read"]["bytes"], kFileSize);
    EXPECT_GE(j["read"]["direct"], kFileSize);
    EXPECT_EQ(j["read_ahead"]["hits"], 0);
    EXPECT_EQ(j["read_ahead"]["misses"], 0);
    EXPECT_EQ(j["coalescing"]["chunks_written"], 0);
    EXPECT_EQ(j["pool"]["limit"], 0) << "a strict mount has no pool";
    EXPECT_EQ(j["page_cache"]["window_drops"], 0) << "strict files are FOPEN_DIRECT_IO";
}

// Without dbopt every byte goes through the backing's page cache: passthrough.
TEST_F(Stats, PlainMountCountsPassthrough) {
    DIOFS_MOUNT_ON(Backing::plain, {});
    ASSERT_NO_FATAL_FAILURE(write_file("f", kFileSize, 0));
    EXPECT_EQ(read_file("f"), kFileSize);
    Json j = stats_when_closed();
    EXPECT_EQ(j["written"]["passthrough"], kFileSize);
    EXPECT_EQ(j["written"]["bytes"], kFileSize);
    EXPECT_EQ(j["written"]["direct"], 0);
    EXPECT_EQ(j["read"]["passthrough"], j["read"]["bytes"]);
    EXPECT_GE(j["read"]["bytes"], kFileSize) << "the kernel may read a page twice, not less";
    EXPECT_EQ(j["devices"].size(), 0u);
    EXPECT_EQ(j["options"]["dbopt"], false);
}

// A backing filesystem that refuses O_DIRECT: the buffered fallback, and its device says so.
TEST_F(Stats, RamfsCountsTheBufferedFallback) {
    DIOFS_MOUNT_ON(Backing::ramfs, {"dbopt"});
    ASSERT_NO_FATAL_FAILURE(write_file("f", kFileSize, 1));
    EXPECT_EQ(read_file("f"), kFileSize);
    Json j = stats_when_closed();
    EXPECT_EQ(j["written"]["buffered_fallback"], kFileSize) << j.dump();
    EXPECT_EQ(j["written"]["direct"], 0);
    EXPECT_GE(j["read"]["buffered_fallback"], kFileSize);
    EXPECT_EQ(j["read"]["direct"], 0);
    ASSERT_EQ(j["devices"].size(), 1u);
    EXPECT_EQ(j["devices"][0]["direct_io"], false);
}

// Only the root has it, nobody can set or remove it, and it is not listed (so that cp -a and
// tar --xattrs do not copy it).
TEST_F(Stats, TheAttributeIsReadOnlyAndOnlyOnTheRoot) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt"});
    ASSERT_EQ(::mkdir(mnt("d").c_str(), 0755), 0);
    char buf[16];
    EXPECT_EQ(::getxattr(mnt("d").c_str(), "user.diofs.stats", buf, sizeof buf), -1);
    EXPECT_EQ(errno, ENODATA);
    EXPECT_EQ(::setxattr(mount().mnt().c_str(), "user.diofs.stats", "x", 1, 0), -1);
    EXPECT_EQ(errno, EPERM);
    EXPECT_EQ(::removexattr(mount().mnt().c_str(), "user.diofs.stats"), -1);
    EXPECT_EQ(errno, EPERM);
    EXPECT_EQ(::getxattr(mount().mnt().c_str(), "user.diofs.stats", buf, sizeof buf), -1)
        << "a buffer too small";
    EXPECT_EQ(errno, ERANGE);
    std::string list(4096, '\0');
    ssize_t n = ::listxattr(mount().mnt().c_str(), list.data(), list.size());
    ASSERT_GE(n, 0) << errno_name(errno);
    EXPECT_EQ(list.substr(0, static_cast<size_t>(n)).find("diofs"), std::string::npos);
    // A name of the backing directory's own is still the backing directory's.
    ASSERT_EQ(::setxattr(mount().mnt().c_str(), "user.other", "v", 1, 0), 0) << errno_name(errno);
    EXPECT_EQ(::getxattr(mount().mnt().c_str(), "user.other", buf, sizeof buf), 1);
}

// `diofs stats` prints the table and --json the value; SIGUSR1 logs the same numbers.
TEST_F(Stats, CommandAndSignalShowTheSameNumbers) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt"});
    ASSERT_NO_FATAL_FAILURE(write_file("f", kFileSize, 1));
    const Json j = stats_when_closed();
    std::string out;
    ASSERT_EQ(run_command({DIOFS_BINARY, "stats", mount().mnt(), "--json"}, &out), 0) << out;
    const Json printed = Json::parse(out);
    EXPECT_EQ(printed["written"], j["written"]);
    ASSERT_EQ(run_command({DIOFS_BINARY, "stats", mount().mnt()}, &out), 0) << out;
    EXPECT_NE(out.find("8.0 MiB"), std::string::npos) << out;
    EXPECT_NE(out.find("coalescing"), std::string::npos) << out;
    EXPECT_NE(out.find("0 pages resident after a drop"), std::string::npos) << out;
    EXPECT_NE(run_command({DIOFS_BINARY, "stats", mount().backing()}, &out), 0);
    EXPECT_NE(out.find("not the root of a diofs mount"), std::string::npos) << out;

    ASSERT_TRUE(mount().inode_count().has_value()) << "no stats line after SIGUSR1";
    const std::string log = mount().log();
    const std::string line = log.substr(log.rfind("stats: "));
    EXPECT_NE(line.find(" written.bytes=" + std::to_string(kFileSize) + " "), std::string::npos)
        << line;
    EXPECT_NE(line.find(" page_cache.resident_after_drop=0 "), std::string::npos) << line;
}

// The backing path and the daemon's PID are for root and the mount's owner: another user sees
// the source as /proc/mounts shows it (fsname=) and no PID, through getxattr and `diofs stats`
// alike, and the same figures.
TEST_F(Stats, AnotherUserSeesNeitherTheBackingPathNorThePid) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "fsname=archive-of-the-test"});
    ASSERT_NO_FATAL_FAILURE(write_file("f", kFileSize, 1));
    const Json mine = stats_when_closed();
    EXPECT_EQ(mine["mount"]["source"], mount().backing());
    EXPECT_EQ(mine["mount"]["pid"], mount().pid());

    // setpriv(1): the command as uid and gid 65534 (nobody), without supplementary groups.
    const std::vector<std::string> as_nobody = {"setpriv", "--reuid=65534", "--regid=65534",
                                                "--clear-groups", DIOFS_BINARY, "stats",
                                                mount().mnt()};
    std::string out;
    std::vector<std::string> json_command = as_nobody;
    json_command.push_back("--json");
    ASSERT_EQ(run_command(json_command, &out), 0) << out;
    const Json theirs = Json::parse(out);
    EXPECT_EQ(theirs["mount"]["source"], "archive-of-the-test");
    EXPECT_TRUE(theirs["mount"]["pid"].is_null()) << theirs["mount"];
    EXPECT_EQ(theirs["mount"]["mountpoint"], mount().mnt());
    EXPECT_EQ(theirs["written"], mine["written"]);
    EXPECT_EQ(out.find(mount().backing()), std::string::npos) << out;

    ASSERT_EQ(run_command(as_nobody, &out), 0) << out;
    EXPECT_NE(out.find("): archive-of-the-test on " + mount().mnt() + "\n"), std::string::npos)
        << out;
    EXPECT_EQ(out.find(mount().backing()), std::string::npos) << out;
    EXPECT_EQ(out.find(", pid "), std::string::npos) << out;
    EXPECT_NE(out.find("8.0 MiB"), std::string::npos) << out;
}

}  // namespace

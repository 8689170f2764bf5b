#pragma once
// Shared by the dbopt tests: a fixture that mounts `diofs -o dbopt` over a plain directory (the
// machine's own filesystem), over a fresh filesystem on a 4096-byte-sector loop device or over
// a ramfs (which refuses O_DIRECT), plus
// small helpers (seeds, page-cache residency, log searches, byte comparisons).

#include "loop_device.hpp"
#include "mount_fixture.hpp"
#include "test_support.hpp"

#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace diofs_test {

enum class Backing {
    plain,     // a directory on the machine's own filesystem (here ext4 on a 512-byte disk)
    xfs_4k,    // xfs on a loop device with 4096-byte logical sectors
    ext4_4k,   // ext4 on a loop device with 4096-byte logical sectors
    ramfs,     // a ramfs, which refuses O_DIRECT: dbopt's buffered fallback
};

inline const char* to_string(Backing b) {
    switch (b) {
        case Backing::plain: return "plain directory";
        case Backing::xfs_4k: return "xfs on a 4096-byte-sector loop device";
        case Backing::ext4_4k: return "ext4 on a 4096-byte-sector loop device";
        case Backing::ramfs: return "ramfs";
    }
    return "?";
}

// For gtest's names of parameterized tests.
inline void PrintTo(Backing b, std::ostream* os) {
    switch (b) {
        case Backing::plain: *os << "plain"; return;
        case Backing::xfs_4k: *os << "xfs_4k"; return;
        case Backing::ext4_4k: *os << "ext4_4k"; return;
        case Backing::ramfs: *os << "ramfs"; return;
    }
}

// DIOFS_SEED, or a fresh random seed.
inline uint64_t seed_from_environment() {
    if (const char* s = std::getenv("DIOFS_SEED"); s && *s)
        return std::strtoull(s, nullptr, 0);
    return static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) ^
           (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

inline long long env_number(const char* name, long long fallback) {
    if (const char* s = std::getenv(name); s && *s)
        return std::strtoll(s, nullptr, 0);
    return fallback;
}

// cachestat(2) (Linux 6.5+): the pages of the open file `fd` in the page cache, without
// mapping it (of [offset, offset + length), length 0: to the end of the file); -1 when the
// kernel lacks it.
inline long cachestat_pages(int fd, uint64_t offset = 0, uint64_t length = 0) {
    struct Range {
        uint64_t off, len;  // len 0: to the end of the file
    } range{offset, length};
    struct Cachestat {
        uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
    } cs{};
    constexpr long kCachestat = 451;  // the same number on every architecture
    if (::syscall(kCachestat, fd, &range, &cs, 0) != 0)
        return -1;
    return static_cast<long>(cs.nr_cache);
}

// How many pages of `path` are in the page cache (cachestat(2), else mincore(2) on a shared
// read-only mapping, which reads nothing by itself), or -1 with `why` set. `total` gets the
// file's page count.
inline long resident_pages(const std::string& path, long* total = nullptr, std::string* why = nullptr) {
    const long page = ::sysconf(_SC_PAGESIZE);
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0) {
        if (why)
            *why = path + ": " + errno_name(errno);
        return -1;
    }
    const long pages = static_cast<long>((st.st_size + page - 1) / page);
    if (total)
        *total = pages;
    if (long cached = cachestat_pages(fd.get()); cached >= 0)
        return cached;
    if (pages == 0)
        return 0;
    void* map = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED) {
        if (why)
            *why = "mmap " + path + ": " + errno_name(errno);
        return -1;
    }
    std::vector<unsigned char> vec(static_cast<size_t>(pages));
    long resident = -1;
    if (::mincore(map, static_cast<size_t>(st.st_size), vec.data()) == 0) {
        resident = 0;
        for (unsigned char v : vec)
            resident += v & 1;
    } else if (why) {
        *why = "mincore " + path + ": " + errno_name(errno);
    }
    ::munmap(map, static_cast<size_t>(st.st_size));
    return resident;
}

// The pages of [offset, offset + length) of `path` that are in the page cache (mincore(2)),
// in order; empty also when it cannot be told.
inline std::vector<long> resident_page_list(const std::string& path, uint64_t offset = 0,
                                            uint64_t length = UINT64_MAX) {
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    std::vector<long> pages;
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st{};
    if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_size == 0 || length == 0)
        return pages;
    const size_t size = static_cast<size_t>(st.st_size);
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    if (map == MAP_FAILED)
        return pages;
    std::vector<unsigned char> vec((size + page - 1) / page);
    if (::mincore(map, size, vec.data()) == 0) {
        const uint64_t last = length > UINT64_MAX - offset ? UINT64_MAX : offset + length - 1;
        for (uint64_t p = offset / page; p < vec.size() && p <= last / page; ++p)
            if (vec[p] & 1)
                pages.push_back(static_cast<long>(p));
    }
    ::munmap(map, size);
    return pages;
}

// The pages of `path` in the page cache as cachestat(2) counts them, found by halving ranges
// (at most `max` of them): unlike mincore(2) on a mapping of the file's size, this also finds
// pages past the end of the file. Empty when there are none or it cannot be told.
inline std::vector<long> resident_page_list_cachestat(const std::string& path, size_t max = 16) {
    const long page = ::sysconf(_SC_PAGESIZE);
    std::vector<long> pages;
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || cachestat_pages(fd.get()) <= 0)
        return pages;
    // Up to 1 TiB of file, in halves.
    std::vector<std::pair<uint64_t, uint64_t>> todo = {{0, uint64_t{1} << 40}};
    while (!todo.empty() && pages.size() < max) {
        auto [off, len] = todo.back();
        todo.pop_back();
        if (cachestat_pages(fd.get(), off, len) <= 0)
            continue;
        if (len <= static_cast<uint64_t>(page)) {
            pages.push_back(static_cast<long>(off / static_cast<uint64_t>(page)));
            continue;
        }
        todo.emplace_back(off + len / 2, len / 2);  // the lower half is looked at first
        todo.emplace_back(off, len / 2);
    }
    return pages;
}

// The whole of the file `path`, read with O_DIRECT (no page of it is left in the page
// cache), or buffered where O_DIRECT is refused (ramfs). Nothing when it cannot be read.
inline std::optional<std::string> read_direct(const std::string& path) {
    constexpr size_t kBuffer = 1u << 20;
    Fd fd(::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
    if (!fd && errno == EINVAL) {
        std::string s;
        if (!read_whole(path, &s))
            return std::nullopt;
        return s;
    }
    if (!fd)
        return std::nullopt;
    std::unique_ptr<char, decltype(&std::free)> buf(
        static_cast<char*>(std::aligned_alloc(4096, kBuffer)), &std::free);
    std::string out;
    struct stat st;  // room for the whole file at once, as read_whole
    if (::fstat(fd.get(), &st) == 0 && st.st_size > 0)
        out.reserve(static_cast<size_t>(st.st_size) + kBuffer);
    for (;;) {
        ssize_t n = ::pread(fd.get(), buf.get(), kBuffer, static_cast<off_t>(out.size()));
        if (n < 0)
            return std::nullopt;
        out.append(buf.get(), static_cast<size_t>(n));
        if (static_cast<size_t>(n) < kBuffer)
            return out;
    }
}

// "3 17 18" (at most 16, then how many in all).
inline std::string pages_text(const std::vector<long>& pages) {
    std::string s;
    for (size_t i = 0; i < pages.size() && i < 16; ++i)
        s += (i ? " " : "") + std::to_string(pages[i]);
    if (pages.size() > 16)
        s += " ... (" + std::to_string(pages.size()) + " in all)";
    return s;
}

// How many times `needle` occurs in `haystack`.
inline size_t count_occurrences(const std::string& haystack, const std::string& needle) {
    size_t n = 0;
    for (size_t at = haystack.find(needle); at != std::string::npos;
         at = haystack.find(needle, at + needle.size()))
        ++n;
    return n;
}

// Waits (bounded) until the daemon's log contains `needle`; returns the log.
inline std::string wait_for_log(const DiofsMount& m, const std::string& needle,
                                std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string log = m.log();
    while (log.find(needle) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        log = m.log();
    }
    return log;
}

// "" when equal, else where the two first differ and what each holds there.
inline std::string first_difference(const std::string& got, const std::string& want,
                                    uint64_t base = 0) {
    if (got == want)
        return "";
    std::ostringstream s;
    size_t i = 0;
    const size_t n = std::min(got.size(), want.size());
    while (i < n && got[i] == want[i])
        ++i;
    if (i == n) {
        s << "sizes differ: " << got.size() << " bytes vs " << want.size() << " expected";
        return s.str();
    }
    size_t j = i;
    while (j < n && got[j] != want[j])
        ++j;
    s << "first difference at offset " << base + i << " (sector " << (base + i) / 512 << ", page "
      << (base + i) / 4096 << "): got 0x" << std::hex << (unsigned(got[i]) & 0xff)
      << ", expected 0x" << (unsigned(want[i]) & 0xff) << std::dec << "; differing run of "
      << j - i << " bytes" << (got.size() != want.size() ? "; the sizes differ too" : "");
    return s.str();
}

// A ramfs on a private temporary directory, unmounted (and the directory removed) by the
// destructor whatever happens.
class Ramfs {
public:
    Ramfs() {
        dir_ = make_temporary_directory("ramfs");
        if (dir_.empty()) {
            error_ = "mkdtemp: " + errno_name(errno);
            return;
        }
        emergency_ = EmergencyTeardown(
            "ramfs on " + dir_,
            [this] {
                teardown();
                return std::string();
            },
            dir_);
        if (::mount("ramfs", dir_.c_str(), "ramfs", 0, "mode=0755") != 0) {
            error_ = "mount -t ramfs: " + errno_name(errno);
            return;
        }
        mounted_ = true;
    }
    ~Ramfs() { teardown(); }
    void teardown() {
        emergency_.reset();
        if (mounted_) {
            bool done = false;
            for (int i = 0; i < 100 && !done; ++i) {
                done = ::umount2(dir_.c_str(), UMOUNT_NOFOLLOW) == 0;
                if (!done && errno != EBUSY)
                    break;
                if (!done)
                    std::this_thread::sleep_for(std::chrono::milliseconds(30));
            }
            // A ramfs left mounted holds its memory for ever: detach it at the least.
            if (!done)
                ::umount2(dir_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
            mounted_ = false;
        }
        if (!dir_.empty())
            ::rmdir(dir_.c_str());
        dir_.clear();
    }
    Ramfs(const Ramfs&) = delete;
    Ramfs& operator=(const Ramfs&) = delete;
    const std::string& error() const { return error_; }
    std::string path(const std::string& rel) const { return dir_ + "/" + rel; }

private:
    std::string dir_, error_;
    bool mounted_ = false;
    EmergencyTeardown emergency_;  // teardown(), should the test never get there
};

// A test that mounts diofs over a backing of its choice. The loop filesystem outlives the
// mount (members are destroyed in reverse order), and TearDown stops both explicitly.
class DbOptTest : public ::testing::Test, protected MountPaths {
protected:
    // Mounts diofs with `options` over `backing`: <tmp>/backing and <tmp>/ref for a plain
    // directory, or backing/ and ref/ on a fresh loop filesystem. Skips (fails under CI=true)
    // when FUSE or loop devices cannot be used. Use through DIOFS_MOUNT_ON.
    void mount_on(Backing backing, std::vector<std::string> options = {"dbopt"}) {
        DIOFS_REQUIRE_FUSE();
        ::umask(022);
        mount_ = std::make_unique<DiofsMount>(options);
        if (backing != Backing::plain) {
            std::string b, r;
            if (backing == Backing::ramfs) {
                ramfs_ = std::make_unique<Ramfs>();
                if (!ramfs_->error().empty()) {
                    if (ci_mode())
                        FAIL() << "a ramfs is required under CI=true: " << ramfs_->error();
                    GTEST_SKIP() << "cannot mount a ramfs here: " << ramfs_->error();
                }
                b = ramfs_->path("backing");
                r = ramfs_->path("ref");
            } else {
                ASSERT_NO_FATAL_FAILURE(make_loop(backing == Backing::xfs_4k ? "xfs" : "ext4"));
                if (IsSkipped())
                    return;
                b = loop_->path("backing");
                r = loop_->path("ref");
            }
            ASSERT_EQ(::mkdir(b.c_str(), 0755), 0) << b << ": " << errno_name(errno);
            ASSERT_EQ(::mkdir(r.c_str(), 0755), 0) << r << ": " << errno_name(errno);
            mount_->use_directories(b, r);
        }
        std::string error = mount_->start();
        ASSERT_EQ(error, "") << "could not mount diofs over the " << to_string(backing);
    }

    // A loop filesystem of `fstype` on 4096-byte sectors, in loop_.
    void make_loop(const std::string& fstype, uint64_t image_bytes = 2ull << 30) {
        LoopFilesystem::Config config;
        config.fstype = fstype;
        config.image_bytes = image_bytes;
        loop_ = std::make_unique<LoopFilesystem>(config);
        std::string error = loop_->setup();
        if (!error.empty()) {
            if (ci_mode())
                FAIL() << "a " << fstype << " loop device is required under CI=true: " << error;
            GTEST_SKIP() << "cannot make a " << fstype << " loop device here: " << error;
        }
    }

    void TearDown() override {
        if (mount_) {
            const bool started = !mount_->dir().empty();
            const bool survived = !started || mount_->daemon_alive();
            if (started && (HasFailure() || !survived))
                std::cerr << "---- diofs log (" << mount_->log_path() << ", last lines) ----\n"
                          << mount_->log_tail(60) << "---- end of diofs log ----\n";
            std::string problems = mount_->stop();
            if (started && expect_clean_daemon_) {
                EXPECT_TRUE(survived) << "the diofs daemon died during the test: "
                                      << mount_->exit_description();
                EXPECT_EQ(problems, "") << "teardown of the diofs mount was not clean";
            }
            mount_.reset();
        }
        if (loop_) {
            std::string problems = loop_->teardown();
            EXPECT_EQ(problems, "") << "teardown of the loop filesystem was not clean";
            loop_.reset();
        }
        ramfs_.reset();
    }

    DiofsMount& mount() const override { return *mount_; }

    // Declared first: destroyed last, after the mount that may serve a directory on them.
    std::unique_ptr<Ramfs> ramfs_;
    std::unique_ptr<LoopFilesystem> loop_;
    std::unique_ptr<DiofsMount> mount_;
    bool expect_clean_daemon_ = true;
};

#define DIOFS_MOUNT_ON(...)                         \
    do {                                            \
        mount_on(__VA_ARGS__);                      \
        if (IsSkipped() || HasFatalFailure())       \
            return;                                 \
    } while (0)

}  // namespace diofs_test

// Randomized differential test: the same seeded sequence of operations (create, open, write and
// read at random offsets and lengths, truncate, rename, link, unlink, mkdir, rmdir, re-open...)
// runs through the mount and on a plain reference directory. After every operation the results
// and errno values must be the same; every 200 operations, and at the end, the whole trees
// (names, types, sizes, modes, link counts, contents) must be the same.
//
// DIOFS_SEED=<n> replays a run; DIOFS_RANDOM_OPS=<n> changes the number of operations.

#include "differential_pair.hpp"
#include "mount_fixture.hpp"
#include "test_support.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>
#include <sstream>

namespace diofs_test {
namespace {

constexpr size_t kMaxIo = 256 * 1024;          // longest read or write
constexpr off_t kMaxOffset = 1024 * 1024;      // writes start below this
constexpr off_t kMaxTruncate = 1280 * 1024;
constexpr int kCompareEvery = 200;

uint64_t seed_from_environment() {
    if (const char* s = std::getenv("DIOFS_SEED"); s && *s)
        return std::strtoull(s, nullptr, 0);
    return static_cast<uint64_t>(
               std::chrono::system_clock::now().time_since_epoch().count()) ^
           std::random_device{}();
}

long ops_from_environment() {
    if (const char* s = std::getenv("DIOFS_RANDOM_OPS"); s && *s)
        return std::strtol(s, nullptr, 0);
    return 10000;
}

struct Slot {
    int m = -1, r = -1;
    std::string path;
    int flags = 0;
};

class Differential : public DifferentialPair<Slot, 6> {
public:
    Differential(std::string mnt, std::string ref, uint64_t seed)
        : DifferentialPair(std::move(mnt), std::move(ref), seed) {
        pool_.resize(2 * kMaxIo + 4096);
        std::mt19937_64 fill(seed ^ 0x9e3779b97f4a7c15ULL);
        for (auto& c : pool_)
            c = static_cast<char>(fill());
        for (const char* d : {"", "d0/", "d1/", "d0/e0/"})
            for (const char* n : {"f0", "f1", "f2", "f3", "f4"})
                files_.push_back(std::string(d) + n);
        dirs_ = {"d0", "d1", "d0/e0", "d1/e1", "d2", "d0/e0/g0"};
    }

    // One random operation; false (and failure() says why) when the two sides disagreed.
    bool step(long index) {
        index_ = index;
        const int pick = uniform(0, 99);
        if (pick < 12)
            return op_open();
        if (pick < 16)
            return op_reopen();
        if (pick < 20)
            return op_close();
        if (pick < 40)
            return op_write();
        if (pick < 55)
            return op_read();
        if (pick < 60)
            return op_ftruncate();
        if (pick < 64)
            return op_truncate();
        if (pick < 71)
            return op_rename();
        if (pick < 76)
            return op_link();
        if (pick < 82)
            return op_unlink();
        if (pick < 87)
            return op_mkdir();
        if (pick < 91)
            return op_rmdir();
        if (pick < 97)
            return op_stat();
        return op_fsync();
    }

    // Compares the two whole trees.
    bool compare_trees() { return compare_dir(""); }

private:
    // Mostly short lengths, sometimes up to kMaxIo.
    size_t io_length() {
        switch (uniform(0, 3)) {
            case 0: return static_cast<size_t>(uniform(0, 512));
            case 1: return static_cast<size_t>(uniform(1, 8192));
            case 2: return static_cast<size_t>(uniform(4096, 65536));
            default: return static_cast<size_t>(uniform(0, static_cast<int>(kMaxIo)));
        }
    }
    off_t io_offset(off_t limit) {
        switch (uniform(0, 3)) {
            case 0: return uniform(0, 8) * 4096;  // aligned
            case 1: return uniform_ll(0, 8192);
            default: return uniform_ll(0, limit);
        }
    }
    const std::string& any_file() { return files_[static_cast<size_t>(uniform(0, static_cast<int>(files_.size()) - 1))]; }
    const std::string& any_dir() { return dirs_[static_cast<size_t>(uniform(0, static_cast<int>(dirs_.size()) - 1))]; }
    const std::string& any_name() { return uniform(0, 3) == 0 ? any_dir() : any_file(); }

    template <typename F>
    bool both(const std::string& what, F&& f) {
        Outcome om = capture([&] { return f(mnt_); });
        Outcome orf = capture([&] { return f(ref_); });
        return check(what, om, orf);
    }

    bool open_into(Slot& s, const std::string& path, int flags) {
        return open_into_slot(s, Slot{.path = path, .flags = flags}, path,
                              "open " + path + " flags " + octal(static_cast<unsigned>(flags)));
    }

    bool op_open() {
        static const int kFlags[] = {O_RDWR,
                                     O_RDWR | O_CREAT,
                                     O_RDWR | O_CREAT,
                                     O_WRONLY | O_CREAT | O_TRUNC,
                                     O_RDONLY,
                                     O_RDWR | O_APPEND | O_CREAT,
                                     O_RDWR | O_CREAT | O_EXCL,
                                     O_WRONLY | O_CREAT};
        int flags = kFlags[uniform(0, 7)];
        return open_into(any_slot(), any_file(), flags);
    }

    // Close and open the same path again (the name may meanwhile be another file, or none).
    bool op_reopen() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        std::string path = s.path;
        int flags = s.flags & ~(O_EXCL | O_TRUNC);
        return open_into(s, path, uniform(0, 4) == 0 ? (flags | O_TRUNC) : flags);
    }

    bool op_close() {
        Slot& s = any_slot();
        if (s.m < 0)
            return true;
        return close_both(s, "close " + s.path);
    }

    bool op_write() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        const size_t len = io_length();
        const char* data = pool_.data() + uniform(0, 4096);
        std::ostringstream what;
        if (uniform(0, 3) == 0) {
            // At the descriptor's position, after a seek.
            const off_t off = io_offset(kMaxOffset);
            what << "lseek+write " << s.path << " at " << off << " length " << len;
            Outcome lm = capture([&] { return ::lseek(s.m, off, SEEK_SET); });
            Outcome lr = capture([&] { return ::lseek(s.r, off, SEEK_SET); });
            if (!check(what.str() + " (lseek)", lm, lr))
                return false;
            Outcome om = capture([&] { return ::write(s.m, data, len); });
            Outcome orf = capture([&] { return ::write(s.r, data, len); });
            if (!check(what.str(), om, orf))
                return false;
            return on_both_fds(s, what.str() + " (position after)",
                               [](int fd) { return ::lseek(fd, 0, SEEK_CUR); });
        }
        const off_t off = io_offset(kMaxOffset);
        what << "pwrite " << s.path << " at " << off << " length " << len;
        Outcome om = capture([&] { return ::pwrite(s.m, data, len, off); });
        Outcome orf = capture([&] { return ::pwrite(s.r, data, len, off); });
        return check(what.str(), om, orf);
    }

    bool op_read() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        const size_t len = io_length();
        const off_t off = io_offset(kMaxTruncate + 4096);
        bm_.assign(len, '\0');
        br_.assign(len, '\x55');
        std::ostringstream what;
        what << "pread " << s.path << " at " << off << " length " << len;
        Outcome om = capture([&] { return ::pread(s.m, bm_.data(), len, off); });
        Outcome orf = capture([&] { return ::pread(s.r, br_.data(), len, off); });
        if (!check(what.str(), om, orf))
            return false;
        if (om.ok() && std::memcmp(bm_.data(), br_.data(), static_cast<size_t>(om.rv)) != 0) {
            size_t i = 0;
            while (bm_[i] == br_[i])
                ++i;
            std::ostringstream d;
            d << what.str() << ": the bytes differ, first at file offset " << (off + static_cast<off_t>(i));
            return fail(d.str());
        }
        return true;
    }

    bool op_ftruncate() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        const off_t size = uniform(0, 2) == 0 ? uniform(0, 3) * 4096 : uniform_ll(0, kMaxTruncate);
        std::ostringstream what;
        what << "ftruncate " << s.path << " to " << size;
        return on_both_fds(s, what.str(), [&](int fd) { return ::ftruncate(fd, size); });
    }

    bool op_truncate() {
        const std::string& path = any_name();
        const off_t size = uniform_ll(0, kMaxTruncate);
        std::ostringstream what;
        what << "truncate " << path << " to " << size;
        return both(what.str(), [&](const std::string& b) {
            return ::truncate((b + "/" + path).c_str(), size);
        });
    }

    bool op_rename() {
        const std::string& from = any_name();
        const std::string& to = any_name();
        const unsigned flags = uniform(0, 9) == 0 ? RENAME_NOREPLACE
                               : uniform(0, 9) == 0 ? RENAME_EXCHANGE
                                                    : 0;
        std::ostringstream what;
        what << "rename " << from << " -> " << to << " flags " << flags;
        return both(what.str(), [&](const std::string& b) {
            return ::renameat2(AT_FDCWD, (b + "/" + from).c_str(), AT_FDCWD, (b + "/" + to).c_str(),
                               flags);
        });
    }

    bool op_link() {
        const std::string& from = any_file();
        const std::string& to = any_file();
        return both("link " + from + " -> " + to, [&](const std::string& b) {
            return ::link((b + "/" + from).c_str(), (b + "/" + to).c_str());
        });
    }

    bool op_unlink() {
        const std::string& path = any_name();
        return both("unlink " + path, [&](const std::string& b) {
            return ::unlink((b + "/" + path).c_str());
        });
    }

    bool op_mkdir() {
        const std::string& path = uniform(0, 5) == 0 ? any_file() : any_dir();
        return both("mkdir " + path, [&](const std::string& b) {
            return ::mkdir((b + "/" + path).c_str(), 0755);
        });
    }

    bool op_rmdir() {
        const std::string& path = any_name();
        return both("rmdir " + path, [&](const std::string& b) {
            return ::rmdir((b + "/" + path).c_str());
        });
    }

    bool op_stat() {
        Slot& s = any_slot();
        if (s.m >= 0 && uniform(0, 1) == 0) {
            struct stat sm{}, sr{};
            Outcome om = capture([&] { return ::fstat(s.m, &sm); });
            Outcome orf = capture([&] { return ::fstat(s.r, &sr); });
            if (!check("fstat " + s.path, om, orf))
                return false;
            std::string d = stat_differences(sm, sr);
            return d.empty() ? true : fail("fstat " + s.path + ":" + d);
        }
        const std::string& path = any_name();
        struct stat sm{}, sr{};
        Outcome om = capture([&] { return ::lstat(m(path).c_str(), &sm); });
        Outcome orf = capture([&] { return ::lstat(r(path).c_str(), &sr); });
        if (!check("lstat " + path, om, orf))
            return false;
        std::string d = om.ok() ? stat_differences(sm, sr) : "";
        return d.empty() ? true : fail("lstat " + path + ":" + d);
    }

    bool op_fsync() {
        Slot& s = any_slot();
        if (s.m < 0)
            return true;
        const bool data_only = uniform(0, 1) == 0;
        auto sync = [&](int fd) { return data_only ? ::fdatasync(fd) : ::fsync(fd); };
        return on_both_fds(s, std::string(data_only ? "fdatasync " : "fsync ") + s.path, sync);
    }

    bool compare_file(const std::string& rel) {
        Fd fm(::open(m(rel).c_str(), O_RDONLY | O_CLOEXEC));
        Fd fr(::open(r(rel).c_str(), O_RDONLY | O_CLOEXEC));
        if (!fm || !fr)
            return fail("tree: cannot open " + rel + " on " + (fm ? "the reference" : "the mount") +
                        ": " + errno_name(errno));
        off_t off = 0;
        while (true) {
            bm_.resize(1 << 20);
            br_.resize(1 << 20);
            ssize_t nm = ::pread(fm.get(), bm_.data(), bm_.size(), off);
            ssize_t nr = ::pread(fr.get(), br_.data(), br_.size(), off);
            if (nm != nr) {
                std::ostringstream s;
                s << "tree: " << rel << ": reading at " << off << " gives " << nm
                  << " bytes through the mount, " << nr << " on the reference";
                return fail(s.str());
            }
            if (nm <= 0)
                return true;
            if (std::memcmp(bm_.data(), br_.data(), static_cast<size_t>(nm)) != 0) {
                size_t i = 0;
                while (bm_[i] == br_[i])
                    ++i;
                std::ostringstream s;
                s << "tree: " << rel << ": contents differ, first at offset " << off + static_cast<off_t>(i);
                return fail(s.str());
            }
            off += nm;
        }
    }

    bool compare_dir(const std::string& rel) {
        std::map<std::string, unsigned char> lm, lr;
        const std::string shown = rel.empty() ? "." : rel;
        if (!list_dir(rel.empty() ? mnt_ : m(rel), &lm))
            return fail("tree: cannot list " + shown + " through the mount: " + errno_name(errno));
        if (!list_dir(rel.empty() ? ref_ : r(rel), &lr))
            return fail("tree: cannot list the reference " + shown + ": " + errno_name(errno));
        if (lm != lr) {
            std::ostringstream s;
            s << "tree: " << shown << " lists differently; mount:";
            for (auto& [n, t] : lm)
                s << " " << n << "(" << int(t) << ")";
            s << "; reference:";
            for (auto& [n, t] : lr)
                s << " " << n << "(" << int(t) << ")";
            return fail(s.str());
        }
        for (const auto& entry : lm) {
            const std::string child = rel.empty() ? entry.first : rel + "/" + entry.first;
            struct stat sm{}, sr{};
            if (::lstat(m(child).c_str(), &sm) != 0 || ::lstat(r(child).c_str(), &sr) != 0)
                return fail("tree: cannot lstat " + child + ": " + errno_name(errno));
            std::string d = stat_differences(sm, sr);
            if (!d.empty())
                return fail("tree: " + child + ":" + d);
            if (S_ISDIR(sm.st_mode) && !compare_dir(child))
                return false;
            if (S_ISREG(sm.st_mode) && !compare_file(child))
                return false;
        }
        return true;
    }

    std::string pool_;
    std::vector<std::string> files_, dirs_;
};

class MountRandomDifferential : public MountTest {};

TEST_F(MountRandomDifferential, SeededOperationsMatchTheReference) {
    const uint64_t seed = seed_from_environment();
    const long ops = ops_from_environment();
    std::ostringstream replay;
    replay << "seed " << seed << " (replay with DIOFS_SEED=" << seed << ")";
    SCOPED_TRACE(replay.str());
    std::cout << "[ diofs    ] random differential test, " << ops << " operations, " << replay.str()
              << std::endl;
    Differential run(mnt(), ref(), seed);
    long done = 0;
    for (long i = 1; i <= ops; ++i) {
        if (!run.step(i))
            break;
        done = i;
        if (i % kCompareEvery == 0 && !run.compare_trees())
            break;
        ASSERT_TRUE(mount().daemon_alive()) << "the daemon died at operation #" << i << ", "
                                            << replay.str();
    }
    if (run.failure().empty())
        run.compare_trees();
    std::cout << "[ diofs    ] " << run.checked() << " results compared, " << run.succeeded()
              << " of them successes" << std::endl;
    // A run where (nearly) everything fails would compare only error paths.
    EXPECT_GT(run.succeeded(), run.checked() / 3) << replay.str();
    EXPECT_EQ(run.failure(), "") << replay.str() << ", after " << done << " operations";
    EXPECT_EQ(done, ops);
}

}  // namespace
}  // namespace diofs_test

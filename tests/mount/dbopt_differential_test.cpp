// Randomized differential test of the dbopt data path: the same seeded sequence of file
// operations runs through a `-o dbopt` mount and on a plain reference directory on the same
// filesystem. Writes and reads at unaligned offsets with lengths from 1 byte to 3 MiB (mostly
// small), writes that extend files past their end (leaving holes), truncates up and down,
// copy_file_range between files of the mount (unaligned, and aligned so that xfs can clone),
// opens with O_APPEND, O_SYNC and O_DSYNC, closes and re-opens. Every result and errno must be
// the same; every kSizesEvery operations the sizes, every kContentsEvery operations and at the
// end the whole contents (read through the mount, and at the end also the backing files read
// directly) must be the same. After every operation no page of any backing file may be left in
// the page cache (dbopt's other promise; counted per kind of operation and reported at the end,
// so that a residency problem does not hide the correctness results).
//
// Two modes. Strict (`-o dbopt,strict`: every write on the device when it returns): after every
// write, copy and truncate the backing file (stat directly) has the reference's size. Coalescing
// (the default options: read-ahead and write coalescing): writes may be held in the daemon's
// memory, so through the mount everything must still match the reference after every operation
// (sizes from stat include pending bytes, reads see every write), while the backing file may
// only be shorter than the reference after a write or copy; after a truncate (which writes out
// what is pending first), an fsync of any descriptor of the file, and a close of its last
// writable descriptor, the backing file must have the reference's size, and its bytes (read with
// O_DIRECT, which leaves no page behind) the reference's bytes. Both modes check the same after
// fsync and close; at the end every descriptor is closed and the backing files compared again.
// No page of a backing file may stay in the page cache in either mode (coalescing buffers are the
// daemon's private memory); in coalescing mode a writeout may still be on its way on an I/O
// thread when the operation returns, so a resident page is looked at again for up to 200 ms
// before it counts (a bounce page is resident for the moment of its write).
//
// It runs on a plain directory (512-byte sectors here; also with -o dio_align=4096), on xfs on a
// 4096-byte-sector loop device (reference on the same xfs, so that copy_file_range clones there
// too), on ext4 on a 4096-byte-sector loop device, each in both modes, and on a ramfs (the
// buffered fallback, which neither reads ahead nor coalesces).
//
// DIOFS_SEED=<n> replays a run; DIOFS_DBOPT_OPS=<n> changes the number of operations;
// DIOFS_DBOPT_HISTORY=<n> how many of the last operations a failure lists (40).

#include "dbopt_support.hpp"
#include "differential_pair.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <thread>
#include <deque>
#include <map>
#include <random>
#include <sstream>

namespace diofs_test {
namespace {

constexpr uint64_t kMaxFileSize = 16u << 20;  // no write, copy or truncate goes past this
constexpr size_t kMaxIo = 3u << 20;
constexpr size_t kMaxCopy = 4u << 20;
// copy_file_range calls of one copy at most. A copy inside one file onto itself a few bytes
// further on, to its end, copies those few bytes per call (each call stops at the end of the
// file it is growing): up to 4 Mi calls, seconds on the reference and over 20 minutes through
// the mount at a few hundred microseconds a request (seed 14988047414810800448 timed out so).
// Both sides stop after as many calls: every other copy takes one or two.
constexpr int kMaxCopyCalls = 1000;
constexpr size_t kPoolSlack = 64u << 10;
constexpr int kFiles = 6;
constexpr long kSizesEvery = 250;
constexpr long kContentsEvery = 2500;
constexpr size_t kHistory = 40;
// Operations of the coalescing runs (the strict ones do 20000).
constexpr long kCoalescingOps = 20000;

struct Slot {
    int m = -1, r = -1;
    int file = -1;
    int flags = 0;
};

enum class Mode {
    strict,      // -o dbopt,strict: every write on the backing file when it returns
    coalescing,  // the default options: read-ahead and write coalescing
};

class DbDifferential : public DifferentialPair<Slot, 5> {
public:
    // With `check_residency`, after every operation no page of any backing file may be in the
    // page cache (not on ramfs, whose pages can never leave it).
    DbDifferential(std::string mnt, std::string ref, std::string backing, uint64_t seed,
                   bool check_residency, Mode mode)
        : DifferentialPair(std::move(mnt), std::move(ref), seed),
          backing_(std::move(backing)),
          check_residency_(check_residency),
          mode_(mode) {
        pool_.resize(kMaxIo + kPoolSlack);
        std::mt19937_64 fill(seed ^ 0x9e3779b97f4a7c15ULL);
        for (size_t i = 0; i < pool_.size(); i += 8) {
            uint64_t v = fill();
            std::memcpy(pool_.data() + i, &v, std::min<size_t>(8, pool_.size() - i));
        }
        for (int i = 0; i < kFiles; ++i)
            files_.push_back("f" + std::to_string(i));
    }

    bool step(long index) {
        index_ = index;
        const bool ok = one_step();
        if (ok && check_residency_)
            check_residency();
        return ok;
    }

    // "" when no operation left a backing page resident, else how many did, of which kinds,
    // and the first one.
    std::string residency_report() const {
        if (residency_count_ == 0)
            return "";
        std::ostringstream s;
        s << residency_count_ << " operations left pages of a backing file in the page cache (";
        bool first = true;
        for (const auto& [kind, n] : residency_by_kind_) {
            s << (first ? "" : ", ") << kind << ": " << n;
            first = false;
        }
        s << "); the first: " << first_residency_;
        return s.str();
    }

    // Sizes of every file, by name, and of every open descriptor.
    bool compare_sizes() {
        for (const auto& f : files_) {
            struct stat sm{}, sr{};
            Outcome om = capture([&] { return ::stat(m(f).c_str(), &sm); });
            Outcome orf = capture([&] { return ::stat(r(f).c_str(), &sr); });
            if (!check("stat " + f, om, orf))
                return false;
            if (om.ok() && sm.st_size != sr.st_size)
                return fail("stat " + f + ": size " + std::to_string(sm.st_size) +
                            " through the mount, " + std::to_string(sr.st_size) +
                            " on the reference");
        }
        for (auto& s : slots_) {
            if (s.m < 0)
                continue;
            struct stat sm{}, sr{};
            if (::fstat(s.m, &sm) != 0 || ::fstat(s.r, &sr) != 0)
                return fail("fstat " + files_[s.file] + ": " + errno_name(errno));
            if (sm.st_size != sr.st_size)
                return fail("fstat " + files_[s.file] + ": size " + std::to_string(sm.st_size) +
                            " through the mount, " + std::to_string(sr.st_size) +
                            " on the reference");
        }
        return true;
    }

    // Whole contents of every file, through the mount (and, with `backing_too`, the backing
    // file read directly) against the reference.
    bool compare_contents(bool backing_too) {
        for (const auto& f : files_) {
            struct stat sr{};
            const bool exists = ::stat(r(f).c_str(), &sr) == 0;
            struct stat sm{};
            if ((::stat(m(f).c_str(), &sm) == 0) != exists)
                return fail("contents: " + f + (exists ? " is missing in the mount"
                                                        : " exists only in the mount"));
            if (!exists)
                continue;
            std::string want = read_whole(r(f));
            std::string got = read_whole(m(f));
            std::string d = first_difference(got, want);
            if (!d.empty())
                return fail("contents of " + f + " through the mount: " + d);
            if (backing_too) {
                d = first_difference(read_whole(backing_ + "/" + f), want);
                if (!d.empty())
                    return fail("contents of the backing file " + f + ": " + d);
            }
        }
        return true;
    }

    // Closes every open descriptor on both sides (the results must agree): everything held
    // back is then on the backing files.
    bool close_all() {
        index_ = -1;
        for (auto& s : slots_) {
            if (s.m < 0)
                continue;
            const std::string what = "close " + files_[s.file] + " (at the end)";
            note(what);
            if (!close_both(s, what))
                return false;
        }
        return true;
    }

    long backing_checks() const { return backing_checks_; }
    // Pages seen resident right after an operation that were gone once the writeouts under
    // way were done (coalescing mode).
    long transient_residency() const { return transient_residency_; }

    std::string history() const {
        std::string h;
        for (const auto& line : history_)
            h += "  " + line + "\n";
        return h;
    }
    uint64_t bytes_written() const { return bytes_written_; }
    uint64_t bytes_read() const { return bytes_read_; }
    uint64_t bytes_copied() const { return bytes_copied_; }

private:
    bool one_step() {
        const int pick = uniform(0, 99);
        if (pick < 7)
            return op_open();
        if (pick < 10)
            return op_reopen();
        if (pick < 13)
            return op_close();
        if (pick < 43)
            return op_pwrite();
        if (pick < 47)
            return op_seek_write();
        if (pick < 67)
            return op_pread();
        if (pick < 73)
            return op_ftruncate();
        if (pick < 75)
            return op_truncate();
        if (pick < 86)
            return op_copy();
        if (pick < 90)
            return op_stat();
        if (pick < 92)
            return op_fsync();
        if (pick < 93)
            return op_unlink();
        return op_hole_write();
    }

    int any_file() { return uniform(0, kFiles - 1); }

    void note(const std::string& what) {
        history_.push_back("#" + std::to_string(index_) + " " + what);
        if (history_.size() > history_length_)
            history_.pop_front();
    }

    // The reference's idea of the size of the file open in `s` (the truth both sides follow).
    uint64_t size_of(const Slot& s) {
        struct stat st{};
        return ::fstat(s.r, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    }

    // Counts the backing files with resident pages after the operation just done (the last
    // line of the history), then drops those pages so that the next operation is judged alone.
    void check_residency() {
        for (const auto& f : files_) {
            const std::string path = backing_ + "/" + f;
            long total = 0;
            long r = resident_pages(path, &total);
            if (r <= 0)
                continue;
            // A writeout handed to an I/O thread may be under way, its bounce page resident
            // for that moment: what stays after it is done counts.
            const std::string seen_first = first_resident_page(path);
            int waited = 0;
            for (; r > 0 && mode_ == Mode::coalescing && waited < 40; ++waited) {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                r = resident_pages(path, &total);
            }
            if (r <= 0) {
                ++transient_residency_;
                continue;
            }
            ++residency_count_;
            const std::string& op = history_.empty() ? std::string("?") : history_.back();
            // "#123 pwrite f1 ...": the kind is the word after the number.
            const size_t a = op.find(' ');
            const size_t b = op.find(' ', a + 1);
            ++residency_by_kind_[a == std::string::npos ? op : op.substr(a + 1, b - a - 1)];
            if (first_residency_.empty())
                first_residency_ = op + ": afterwards backing file " + f + " has " +
                                   std::to_string(r) + " of " + std::to_string(total) +
                                   " pages resident" + first_resident_page(path) +
                                   (waited ? " after waiting " + std::to_string(5 * waited) +
                                                 " ms; when first seen" + seen_first
                                           : "");
            Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
            if (fd) {
                ::fdatasync(fd.get());
                ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
            }
        }
    }

    static std::string first_resident_page(const std::string& path) {
        std::vector<long> pages = resident_page_list(path);
        if (pages.empty())
            pages = resident_page_list_cachestat(path);  // past the end of the file?
        struct stat st{};
        if (pages.empty() || ::stat(path.c_str(), &st) != 0)
            return "";
        return " (pages " + pages_text(pages) + "; the file has " + std::to_string(st.st_size) +
               " bytes)";
    }

    // After an operation that changes a file's size: the backing file (stat directly, not the
    // kernel's cached attributes of the mount) has the reference's size. Cheap, so every time.
    bool backing_size_matches(int file, const std::string& what) {
        return check_backing_size(file, what, /*at_most=*/false);
    }

    // In coalescing mode, after a write or copy into `file`: what is held back may not be on the
    // backing file yet, but nothing can be there that the reference does not have either.
    bool backing_size_at_most(int file, const std::string& what) {
        return check_backing_size(file, what, /*at_most=*/true);
    }

    bool check_backing_size(int file, const std::string& what, bool at_most) {
        struct stat sb{}, sr{};
        const bool b = ::stat((backing_ + "/" + files_[file]).c_str(), &sb) == 0;
        const bool rr = ::stat(r(files_[file]).c_str(), &sr) == 0;
        if (b != rr)
            return fail(what + ": afterwards the backing file " +
                        (b ? "exists and the reference does not" : "is missing"));
        if (b && (at_most ? sb.st_size > sr.st_size : sb.st_size != sr.st_size))
            return fail(what + ": afterwards the backing file has " + std::to_string(sb.st_size) +
                        " bytes, " + (at_most ? "more than " : "") + "the reference " +
                        std::to_string(sr.st_size));
        return true;
    }

    // Whether slot `s` is open on the file now named files_[s.file] (not on one unlinked since).
    bool slot_is_named_file(const Slot& s) {
        struct stat sf{}, sp{};
        return ::fstat(s.r, &sf) == 0 && ::stat(r(files_[s.file]).c_str(), &sp) == 0 &&
               sf.st_ino == sp.st_ino;
    }

    // Whether another open slot than `s` may write to the file `s` is open on.
    bool another_writer_of(const Slot& s) {
        struct stat mine{};
        if (::fstat(s.r, &mine) != 0)
            return true;
        for (const auto& o : slots_) {
            if (&o == &s || o.m < 0 || (o.flags & O_ACCMODE) == O_RDONLY)
                continue;
            struct stat st{};
            if (::fstat(o.r, &st) == 0 && st.st_ino == mine.st_ino)
                return true;
        }
        return false;
    }

    // After an fsync, or the close of the last writable descriptor: nothing is held back any
    // more, so the backing file has the reference's size and bytes (read with O_DIRECT).
    bool backing_matches(int file, const std::string& what) {
        ++backing_checks_;
        if (!backing_size_matches(file, what))
            return false;
        const std::string rel = files_[file];
        struct stat sr{};
        if (::stat(r(rel).c_str(), &sr) != 0)
            return true;
        std::optional<std::string> got = read_direct(backing_ + "/" + rel);
        if (!got)
            return fail(what + ": cannot read the backing file " + rel + ": " + errno_name(errno));
        std::string want;
        if (!read_whole(r(rel), &want))
            return fail(what + ": cannot read the reference " + rel);
        const std::string d = first_difference(*got, want);
        if (!d.empty())
            return fail(what + ": afterwards the backing file " + rel + " differs from the "
                        "reference: " + d);
        return true;
    }

    // Mostly small, sometimes large; from 1 byte to kMaxIo.
    size_t io_length(size_t max = kMaxIo) {
        const int pick = uniform(0, 99);
        long long n;
        if (pick < 40)
            n = uniform(1, 600);
        else if (pick < 65)
            n = uniform(1, 9000);
        else if (pick < 75)
            n = 4096LL * uniform(1, 16) + uniform(-2, 2);
        else if (pick < 90)
            n = uniform(1, 256 << 10);
        else if (pick < 97)
            n = uniform(256 << 10, (1 << 20) + 3);
        else
            n = uniform(1 << 20, static_cast<int>(max));
        return static_cast<size_t>(std::clamp<long long>(n, 1, static_cast<long long>(max)));
    }

    // Where a write or copy lands, given the file's size: anywhere in it, at or around its end,
    // past it (a hole), on or next to sector and page boundaries. Never past kMaxFileSize.
    uint64_t target_offset(uint64_t size, uint64_t length) {
        uint64_t off;
        switch (uniform(0, 9)) {
            case 0: off = 4096ULL * static_cast<uint64_t>(uniform_ll(0, size / 4096)); break;
            case 1: {
                long long b = 512LL * uniform_ll(0, static_cast<long long>(size / 512) + 1);
                off = static_cast<uint64_t>(std::max<long long>(0, b + uniform(-3, 3)));
                break;
            }
            case 2: off = size; break;
            case 3: off = size + static_cast<uint64_t>(uniform(1, 2 << 20)); break;
            case 4: off = size > 5000 ? size - static_cast<uint64_t>(uniform(1, 5000)) : 0; break;
            case 5: off = static_cast<uint64_t>(uniform(0, 8192)); break;
            default: off = static_cast<uint64_t>(uniform_ll(0, static_cast<long long>(size))); break;
        }
        if (off + length > kMaxFileSize)
            off = kMaxFileSize - length;
        return off;
    }

    // A source of bytes at an arbitrary (unaligned) address, different from call to call.
    const char* data(size_t length) {
        (void)length;
        return pool_.data() + uniform(0, static_cast<int>(kPoolSlack) - 1);
    }

    bool open_into(Slot& s, int file, int flags) {
        const std::string what =
            "open " + files_[file] + " flags " + octal(static_cast<unsigned>(flags));
        note(what);
        return open_into_slot(s, Slot{.file = file, .flags = flags}, files_[file], what);
    }

    bool op_open() {
        static const int kFlags[] = {O_RDWR | O_CREAT,
                                     O_RDWR | O_CREAT,
                                     O_RDWR | O_CREAT,
                                     O_RDWR,
                                     O_RDONLY,
                                     O_WRONLY | O_CREAT,
                                     O_WRONLY | O_CREAT | O_TRUNC,
                                     O_RDWR | O_APPEND | O_CREAT,
                                     O_RDWR | O_CREAT | O_EXCL,
                                     O_RDWR | O_DSYNC | O_CREAT,
                                     O_RDWR | O_SYNC};
        const int flags = kFlags[uniform(0, std::size(kFlags) - 1)];
        Slot& s = any_slot();
        return open_into(s, any_file(), flags);
    }

    bool op_reopen() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        return open_into(s, s.file, s.flags & ~(O_EXCL | O_TRUNC));
    }

    // A close; when it closed the last descriptor that could write the file, the backing file
    // must then hold everything.
    bool op_close() {
        Slot& s = any_slot();
        if (s.m < 0)
            return true;
        const int file = s.file;
        const bool last_writer = slot_is_named_file(s) && !another_writer_of(s);
        const std::string what = "close " + files_[file];
        note(what + (last_writer ? " (its last writer)" : ""));
        return close_both(s, what) && (!last_writer || backing_matches(file, what));
    }

    bool do_pwrite(Slot& s, uint64_t off, size_t len, const char* what_kind) {
        const char* buf = data(len);
        std::ostringstream what;
        what << what_kind << " " << files_[s.file] << " at " << off << " length " << len
             << " (size " << size_of(s) << ")";
        note(what.str());
        Outcome om = capture([&] { return ::pwrite(s.m, buf, len, static_cast<off_t>(off)); });
        Outcome orf = capture([&] { return ::pwrite(s.r, buf, len, static_cast<off_t>(off)); });
        return check_write(what.str(), om, orf, s.file, bytes_written_);
    }

    // A write or copy into `file` on both sides, its bytes added to `total`: the results must
    // agree, and the backing file have the reference's size.
    bool check_write(const std::string& what, const Outcome& om, const Outcome& orf, int file,
                     uint64_t& total) {
        if (om.ok())
            total += static_cast<uint64_t>(om.rv);
        return check(what, om, orf) && backing_size_after_write(file, what);
    }

    // After a write or copy: the reference's size (strict), at most that (coalescing).
    bool backing_size_after_write(int file, const std::string& what) {
        return mode_ == Mode::strict ? backing_size_matches(file, what)
                                     : backing_size_at_most(file, what);
    }

    bool op_pwrite() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        const size_t len = io_length();
        return do_pwrite(s, target_offset(size_of(s), len), len, "pwrite");
    }

    // A write well past the end: a hole, then data.
    bool op_hole_write() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        const size_t len = io_length(64 << 10);
        uint64_t off = size_of(s) + static_cast<uint64_t>(uniform(1, 3 << 20));
        if (off + len > kMaxFileSize)
            off = kMaxFileSize - len;
        return do_pwrite(s, off, len, "hole+pwrite");
    }

    // lseek, then write() or read() at the descriptor's position; the positions after must
    // agree too.
    bool op_seek_write() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        const size_t len = io_length();
        const uint64_t size = size_of(s);
        const uint64_t off = target_offset(size, len);
        const bool is_read = uniform(0, 2) == 0;
        std::ostringstream what;
        what << "lseek+" << (is_read ? "read " : "write ") << files_[s.file] << " at " << off
             << " length " << len << " (size " << size << ")";
        note(what.str());
        if (!check(what.str() + " (lseek)",
                   capture([&] { return ::lseek(s.m, static_cast<off_t>(off), SEEK_SET); }),
                   capture([&] { return ::lseek(s.r, static_cast<off_t>(off), SEEK_SET); })))
            return false;
        if (is_read) {
            bm_.assign(len, '\0');
            br_.assign(len, '\x5a');
            Outcome om = capture([&] { return ::read(s.m, bm_.data(), len); });
            Outcome orf = capture([&] { return ::read(s.r, br_.data(), len); });
            if (!check_read(what.str(), om, orf, off))
                return false;
        } else {
            const char* buf = data(len);
            Outcome om = capture([&] { return ::write(s.m, buf, len); });
            Outcome orf = capture([&] { return ::write(s.r, buf, len); });
            if (!check(what.str(), om, orf) || !backing_size_after_write(s.file, what.str()))
                return false;
            if (om.ok())
                bytes_written_ += static_cast<uint64_t>(om.rv);
        }
        return on_both_fds(s, what.str() + " (position after)",
                           [](int fd) { return ::lseek(fd, 0, SEEK_CUR); });
    }

    // A read of the same bytes on both sides (into bm_ and br_) at file offset `off`: the
    // results, then the bytes read must be the same.
    bool check_read(const std::string& what, const Outcome& om, const Outcome& orf, uint64_t off) {
        if (!check(what, om, orf))
            return false;
        if (om.ok()) {
            bytes_read_ += static_cast<uint64_t>(om.rv);
            bm_.resize(static_cast<size_t>(om.rv));
            br_.resize(static_cast<size_t>(om.rv));
            std::string d = first_difference(bm_, br_, off);
            if (!d.empty())
                return fail(what + ": " + d);
        }
        return true;
    }

    bool op_pread() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        const size_t len = io_length();
        const uint64_t size = size_of(s);
        uint64_t off;
        switch (uniform(0, 5)) {
            case 0: off = 4096ULL * static_cast<uint64_t>(uniform_ll(0, size / 4096 + 1)); break;
            case 1: off = size > len ? size - len + static_cast<uint64_t>(uniform(0, 2)) : 0; break;
            case 2: off = size + static_cast<uint64_t>(uniform(0, 5000)); break;
            default: off = static_cast<uint64_t>(uniform_ll(0, static_cast<long long>(size))); break;
        }
        bm_.assign(len, '\0');
        br_.assign(len, '\x5a');
        std::ostringstream what;
        what << "pread " << files_[s.file] << " at " << off << " length " << len << " (size "
             << size << ")";
        note(what.str());
        Outcome om = capture([&] { return ::pread(s.m, bm_.data(), len, static_cast<off_t>(off)); });
        Outcome orf = capture([&] { return ::pread(s.r, br_.data(), len, static_cast<off_t>(off)); });
        return check_read(what.str(), om, orf, off);
    }

    uint64_t new_size(uint64_t size) {
        switch (uniform(0, 5)) {
            case 0: return 4096ULL * static_cast<uint64_t>(uniform(0, 4096));
            case 1: return size > 0 ? static_cast<uint64_t>(uniform_ll(0, static_cast<long long>(size))) : 0;
            case 2: return size > 3000 ? size - static_cast<uint64_t>(uniform(1, 3000)) : 0;
            case 3: return std::min<uint64_t>(kMaxFileSize, size + static_cast<uint64_t>(uniform(1, 9000)));
            case 4: return std::min<uint64_t>(kMaxFileSize, size + static_cast<uint64_t>(uniform(1, 2 << 20)));
            default: return static_cast<uint64_t>(uniform_ll(0, static_cast<long long>(kMaxFileSize)));
        }
    }

    bool op_ftruncate() {
        Slot& s = any_slot();
        if (s.m < 0)
            return op_open();
        const uint64_t size = size_of(s);
        const uint64_t to = new_size(size);
        std::ostringstream what;
        what << "ftruncate " << files_[s.file] << " from " << size << " to " << to;
        note(what.str());
        // A truncate writes out what is held back first: then the backing file has the size.
        // (Not when it failed, or the slot's file was unlinked since: the file of that name is
        // another one, which this did not touch.)
        const bool named = slot_is_named_file(s);
        Outcome om = capture([&] { return ::ftruncate(s.m, static_cast<off_t>(to)); });
        Outcome orf = capture([&] { return ::ftruncate(s.r, static_cast<off_t>(to)); });
        if (!check(what.str(), om, orf))
            return false;
        return om.ok() && named ? backing_size_matches(s.file, what.str())
                                : backing_size_after_write(s.file, what.str());
    }

    bool op_truncate() {
        const int f = any_file();
        struct stat st{};
        const uint64_t size = ::stat(r(files_[f]).c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
        const uint64_t to = new_size(size);
        std::ostringstream what;
        what << "truncate " << files_[f] << " from " << size << " to " << to;
        note(what.str());
        Outcome om = capture([&] { return ::truncate(m(files_[f]).c_str(), static_cast<off_t>(to)); });
        Outcome orf = capture([&] { return ::truncate(r(files_[f]).c_str(), static_cast<off_t>(to)); });
        if (!check(what.str(), om, orf))
            return false;
        return om.ok() ? backing_size_matches(f, what.str()) : backing_size_after_write(f, what.str());
    }

    // copy_file_range(2) until done, the source ends, an error, or kMaxCopyCalls calls: (total,
    // errno of a failure before anything was copied). Callers must loop on short counts; so
    // does this.
    static Outcome copy_all(int in, uint64_t off_in, int out, uint64_t off_out, size_t len) {
        loff_t pin = static_cast<loff_t>(off_in), pout = static_cast<loff_t>(off_out);
        long long total = 0;
        for (int calls = 0; static_cast<size_t>(total) < len && calls < kMaxCopyCalls; ++calls) {
            errno = 0;
            ssize_t n = ::copy_file_range(in, &pin, out, &pout, len - static_cast<size_t>(total), 0);
            if (n < 0)
                return total > 0 ? Outcome{total, 0} : Outcome{-1, errno};
            if (n == 0)
                break;
            total += n;
        }
        return Outcome{total, 0};
    }

    bool op_copy() {
        Slot& a = any_slot();
        Slot& b = any_slot();
        if (a.m < 0 || b.m < 0)
            return op_open();
        const uint64_t in_size = size_of(a);
        const uint64_t out_size = size_of(b);
        uint64_t off_in, off_out;
        size_t len;
        if (uniform(0, 2) == 0) {
            // Block-aligned: xfs can share extents (and to the source's end, its last block).
            off_in = 4096ULL * static_cast<uint64_t>(uniform_ll(0, in_size / 4096));
            len = uniform(0, 3) == 0 ? static_cast<size_t>(std::max<uint64_t>(in_size - std::min(in_size, off_in), 1))
                                     : 4096u * static_cast<size_t>(uniform(1, 512));
            len = std::min(len, kMaxCopy);
            off_out = 4096ULL * static_cast<uint64_t>(uniform_ll(0, out_size / 4096 + 64));
        } else {
            off_in = static_cast<uint64_t>(uniform_ll(0, static_cast<long long>(in_size) + 100));
            len = io_length(kMaxCopy);
            off_out = target_offset(out_size, len);
        }
        if (off_out + len > kMaxFileSize)
            len = static_cast<size_t>(kMaxFileSize - off_out);
        std::ostringstream what;
        what << "copy_file_range " << files_[a.file] << " at " << off_in << " (size " << in_size
             << ") -> " << files_[b.file] << " at " << off_out << " (size " << out_size
             << ") length " << len;
        note(what.str());
        Outcome om = copy_all(a.m, off_in, b.m, off_out, len);
        Outcome orf = copy_all(a.r, off_in, b.r, off_out, len);
        return check_write(what.str(), om, orf, b.file, bytes_copied_);
    }

    bool op_stat() {
        Slot& s = any_slot();
        if (s.m < 0)
            return true;
        struct stat sm{}, sr{};
        note("fstat " + files_[s.file]);
        Outcome om = capture([&] { return ::fstat(s.m, &sm); });
        Outcome orf = capture([&] { return ::fstat(s.r, &sr); });
        if (!check("fstat " + files_[s.file], om, orf))
            return false;
        if (om.ok() && sm.st_size != sr.st_size)
            return fail("fstat " + files_[s.file] + ": size " + std::to_string(sm.st_size) +
                        " through the mount, " + std::to_string(sr.st_size) + " on the reference");
        if (om.ok() && sm.st_blksize != 1 << 20)
            return fail("fstat " + files_[s.file] + ": st_blksize " +
                        std::to_string(sm.st_blksize) + ", not 1048576, under dbopt");
        return true;
    }

    bool op_fsync() {
        Slot& s = any_slot();
        if (s.m < 0)
            return true;
        const bool data_only = uniform(0, 1) == 0;
        const std::string what = std::string(data_only ? "fdatasync " : "fsync ") + files_[s.file];
        note(what);
        auto sync = [&](int fd) { return data_only ? ::fdatasync(fd) : ::fsync(fd); };
        // fsync writes out what every descriptor of the inode holds back.
        return on_both_fds(s, what, sync) &&
               (!slot_is_named_file(s) || backing_matches(s.file, what));
    }

    // Rare: keeps the files from all growing to the limit and stay there.
    bool op_unlink() {
        const int f = any_file();
        note("unlink " + files_[f]);
        return check("unlink " + files_[f], capture([&] { return ::unlink(m(files_[f]).c_str()); }),
                     capture([&] { return ::unlink(r(files_[f]).c_str()); }));
    }

    const std::string backing_;
    std::string pool_;
    std::vector<std::string> files_;
    std::deque<std::string> history_;
    uint64_t bytes_written_ = 0, bytes_read_ = 0, bytes_copied_ = 0;
    const bool check_residency_;
    const Mode mode_;
    const size_t history_length_ =
        static_cast<size_t>(env_number("DIOFS_DBOPT_HISTORY", static_cast<long long>(kHistory)));
    long backing_checks_ = 0;
    long transient_residency_ = 0;
    long residency_count_ = 0;
    std::map<std::string, long> residency_by_kind_;
    std::string first_residency_;
};

class DbOptDifferential : public DbOptTest {
protected:
    void run(Mode mode, long default_ops, bool check_residency = true) {
        const uint64_t seed = static_cast<uint64_t>(seed_from_environment());
        const long ops = static_cast<long>(env_number("DIOFS_DBOPT_OPS", default_ops));
        std::ostringstream replay;
        replay << "seed " << seed << " (replay with DIOFS_SEED=" << seed << ")";
        SCOPED_TRACE(replay.str());
        std::cout << "[ diofs    ] dbopt differential test ("
                  << (mode == Mode::strict ? "strict" : "read-ahead and coalescing") << "), " << ops
                  << " operations, " << replay.str() << std::endl;
        const auto started = std::chrono::steady_clock::now();
        DbDifferential d(mnt(), ref(), backing(), seed, check_residency, mode);
        long done = 0;
        for (long i = 1; i <= ops; ++i) {
            if (!d.step(i))
                break;
            if (i % kSizesEvery == 0 && !d.compare_sizes())
                break;
            if (i % kContentsEvery == 0 && !d.compare_contents(false))
                break;
            done = i;
            if (i % 100 == 0) {
                ASSERT_TRUE(mount().daemon_alive())
                    << "the daemon died by operation #" << i << ", " << replay.str()
                    << "; the last operations:\n" << d.history();
            }
        }
        // Residency first: comparing the backing files reads them into the page cache.
        const std::string residency = d.residency_report();
        if (d.failure().empty() && d.compare_sizes() && d.compare_contents(true) &&
            d.close_all() && d.compare_sizes())
            d.compare_contents(true);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        std::cout << "[ diofs    ] " << d.checked() << " results compared, " << d.succeeded()
                  << " successes; " << (d.bytes_written() >> 20) << " MiB written, "
                  << (d.bytes_read() >> 20) << " MiB read, " << (d.bytes_copied() >> 20)
                  << " MiB copied in " << seconds << " s; the backing file compared "
                  << d.backing_checks() << " times after fsync or close; "
                  << d.transient_residency() << " times a page was resident for a moment"
                  << std::endl;
        EXPECT_EQ(d.failure(), "") << replay.str() << ", after " << done
                                   << " operations; the last operations:\n" << d.history();
        EXPECT_EQ(done, ops) << replay.str();
        EXPECT_GT(d.succeeded(), d.checked() / 2) << replay.str();
        // dbopt's other promise, judged after every operation: no page of a backing file stays
        // in the page cache.
        EXPECT_EQ(residency, "") << replay.str() << "; the last operations before the end:\n"
                                 << d.history();
    }
};

// Strict: every write on the backing file when it returns.
TEST_F(DbOptDifferential, StrictPlainDirectory) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "strict"});
    run(Mode::strict, 20000);
}

TEST_F(DbOptDifferential, StrictXfsOn4KSectorLoopDevice) {
    DIOFS_MOUNT_ON(Backing::xfs_4k, {"dbopt", "strict"});
    run(Mode::strict, 20000);
}

TEST_F(DbOptDifferential, StrictExt4On4KSectorLoopDevice) {
    DIOFS_MOUNT_ON(Backing::ext4_4k, {"dbopt", "strict"});
    run(Mode::strict, 20000);
}

// The same sequence with the alignment forced to 4096 on a 512-byte-sector disk.
TEST_F(DbOptDifferential, StrictPlainDirectoryWithDioAlign4096) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "strict", "dio_align=4096"});
    run(Mode::strict, 20000);
}

// Read-ahead and write coalescing (the default with libfuse 3.14; writeback=0 turns the
// window of newer builds off).
TEST_F(DbOptDifferential, CoalescingPlainDirectory) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=0"});
    run(Mode::coalescing, kCoalescingOps);
}

TEST_F(DbOptDifferential, CoalescingXfsOn4KSectorLoopDevice) {
    DIOFS_MOUNT_ON(Backing::xfs_4k, {"dbopt", "writeback=0"});
    run(Mode::coalescing, kCoalescingOps);
}

TEST_F(DbOptDifferential, CoalescingExt4On4KSectorLoopDevice) {
    DIOFS_MOUNT_ON(Backing::ext4_4k, {"dbopt", "writeback=0"});
    run(Mode::coalescing, kCoalescingOps);
}

TEST_F(DbOptDifferential, CoalescingPlainDirectoryWithDioAlign4096) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=0", "dio_align=4096"});
    run(Mode::coalescing, kCoalescingOps);
}

// Small windows and little memory: chunks fill, the pool runs dry (writes then go direct)
// and read-ahead finds no memory, all the time.
TEST_F(DbOptDifferential, CoalescingWithSmallWindowsAndLittleMemory) {
    DIOFS_MOUNT_ON(Backing::plain,
                   {"dbopt", "writeback=0", "readahead=1M", "writebehind=1M", "dbopt_mem=2M", "io_threads=1"});
    run(Mode::coalescing, kCoalescingOps);
}

// The writeback window (the default with libfuse 3.16+): writes go through the kernel's page cache, held to the
// window, and reach the daemon as WRITEs of whole pages; everything through the mount must still
// match the reference, and the backing file may only be behind it until fsync or the last close.
TEST_F(DbOptDifferential, WritebackWindowPlainDirectory) {
    DIOFS_MOUNT_ON(Backing::plain, {"dbopt", "writeback=8M"});
    run(Mode::coalescing, kCoalescingOps);
}

TEST_F(DbOptDifferential, WritebackWindowXfsOn4KSectorLoopDevice) {
    DIOFS_MOUNT_ON(Backing::xfs_4k, {"dbopt", "writeback=8M"});
    run(Mode::coalescing, kCoalescingOps);
}

TEST_F(DbOptDifferential, WritebackWindowExt4On4KSectorLoopDevice) {
    DIOFS_MOUNT_ON(Backing::ext4_4k, {"dbopt", "writeback=8M"});
    run(Mode::coalescing, kCoalescingOps);
}

// A filesystem that refuses O_DIRECT: the buffered fallback that drops its pages. It neither
// reads ahead nor coalesces, whatever the options: with the default options the strict
// expectations hold.
TEST_F(DbOptDifferential, RamfsFallback) {
    DIOFS_MOUNT_ON(Backing::ramfs);
    run(Mode::strict, 20000, /*check_residency=*/false);
}

}  // namespace
}  // namespace diofs_test

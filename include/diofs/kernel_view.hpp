#pragma once
// What the kernel believes of a regular file's size and modification time while the mount
// has the kernel's writeback cache (the writeback window, docs/design.md): with it, the kernel
// keeps its own size and times of every regular file of the mount and ignores those a GETATTR
// or LOOKUP answers (fuse_get_cache_mask), so a file changed around the mount (in the backing
// directory, or by another node of a shared filesystem) would keep its old size through the
// mount for as long as the kernel keeps its inode. The daemon mirrors what the kernel was told
// and what it did since, and when the backing file differs while no open file of the mount has
// it, the kernel's inode is replaced: the next lookup answers a new node id (InodeTable).
//
// Told once, at the lookup that made the kernel's inode; then moved by the requests through
// which the kernel changes its own copy: the WRITEs of its writeback, the SETATTRs it applies
// (a truncate, the times it writes back), and the allocations and copies that extend the file.
// Of the modification time, what is kept is the backing file's after the mount's last change
// (see wrote()).

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>

namespace diofs {

class KernelView {
public:
    // The attributes of the lookup that made the kernel's inode (later ones are ignored by it).
    void told(const struct stat& st) {
        std::lock_guard lock(mutex_);
        if (known_)
            return;
        known_ = true;
        size_ = st.st_size;
        mtime_ = st.st_mtim;
    }
    // A write the kernel sent, or an allocation or copy that extended the file, ending at
    // `end`. The backing file's modification time moved with it and the kernel's did not
    // (the kernel keeps its own and writes it back with a SETATTR, which a WRITE of its
    // writeback may follow): what is compared is the backing file's time after the mount's
    // last change, which `stat_backing(struct stat&)` (0 or -errno) reads, under this view's
    // lock, so that the last one recorded is the latest.
    template <typename StatBacking>
    void wrote(uint64_t end, StatBacking&& stat_backing) {
        std::lock_guard lock(mutex_);
        size_ = std::max<off_t>(size_, static_cast<off_t>(end));
        struct stat st;
        if (stat_backing(st) == 0)
            mtime_ = st.st_mtim;
    }
    // A SETATTR the kernel applied to its copy: the size (`size`: it was changed), and the
    // backing file's modification time, as they are in `st` after it.
    void set(const struct stat& st, bool size) {
        std::lock_guard lock(mutex_);
        if (size)
            size_ = st.st_size;
        mtime_ = st.st_mtim;
    }
    // An open with O_TRUNC: the kernel cut its size to 0 (its time it writes back later).
    void cut() {
        std::lock_guard lock(mutex_);
        size_ = 0;
    }
    // Whether the backing file `st` is not what the kernel believes, or its time not what the
    // mount left.
    bool differs(const struct stat& st) const {
        std::lock_guard lock(mutex_);
        return known_ && (size_ != st.st_size || mtime_.tv_sec != st.st_mtim.tv_sec ||
                          mtime_.tv_nsec != st.st_mtim.tv_nsec);
    }
    uint64_t size() const {
        std::lock_guard lock(mutex_);
        return static_cast<uint64_t>(size_);
    }

    // Open files of the mount that have it: while one does, the kernel's inode stays.
    void opened() { opens_.fetch_add(1); }
    void closed() { opens_.fetch_sub(1); }
    bool open() const { return opens_.load() > 0; }

    // Open files of the mount that write through the window: while one does, the kernel may
    // hold dirty pages of the file, which a drop of all its pages would write back one page at
    // a time (fuse_launder_folio).
    //
    // The kernel has one page cache per inode, and an open it does not cache (FOPEN_DIRECT_IO)
    // beside one that writes through it would read past the dirty pages (a hole before them
    // read short, their old bytes read back) and write under them (their later writeback
    // undoing the write). So an inode's writers are all in the window or all direct while any
    // is open: a synchronous open (O_SYNC, O_DSYNC, O_DIRECT: a request per write(), on the
    // device when it returns) is direct unless window writers have the file, and then joins
    // them (the kernel writes each write() back and sends FSYNC before it returns); a plain
    // writer joins the window unless direct writers have the file. Returns whether the new
    // writer is in the window; writer_closed() with the same answer at its close.
    bool writer_opened(bool synchronous) {
        std::lock_guard lock(mutex_);
        if (synchronous ? writers_.load() == 0 : direct_writers_ > 0) {
            ++direct_writers_;
            return false;
        }
        writers_.fetch_add(1);
        return true;
    }
    void writer_closed(bool window) {
        std::lock_guard lock(mutex_);
        if (!window)
            --direct_writers_;
        else if (writers_.fetch_sub(1) == 1) {
            room_short_.store(false);  // no writer left to tell
            write_error_.store(0);
        }
    }
    bool writing() const { return writers_.load() > 0; }
    int writers() const { return writers_.load(); }

    // Whether the last reservation of room for the window failed (Filesystem::must_ask_again).
    void room_short(bool yes) { room_short_.store(yes, std::memory_order_relaxed); }
    bool room_short() const { return room_short_.load(std::memory_order_relaxed); }
    // A WRITE of the kernel's writeback failed (-errno): its bytes were acknowledged to a
    // write() and are lost. The kernel tells fsync and close; every later write() of the
    // file's writers in the window is told too (Filesystem::reserve_window), until the last of
    // them closes, as a failed writeout is for a file without the window (write_behind.hpp).
    void write_failed(int error) {
        int none = 0;
        write_error_.compare_exchange_strong(none, error);
    }
    int write_error() const { return write_error_.load(std::memory_order_relaxed); }
    // A writer in the window whose room could not be reserved at its open leaves the window
    // when it is the only one there: it writes direct (a request per write(), ENOSPC from the
    // write whose bytes do not fit). Returns whether it did.
    bool writer_to_direct() {
        std::lock_guard lock(mutex_);
        if (writers_.load() != 1)
            return false;
        writers_.store(0);
        ++direct_writers_;
        room_short_.store(false);
        return true;
    }

    // The kernel's inode is to be replaced at the next lookup.
    void supersede() { superseded_.store(true); }
    bool superseded() const { return superseded_.load(); }

private:
    mutable std::mutex mutex_;
    bool known_ = false;
    off_t size_ = 0;
    timespec mtime_{};
    std::atomic<int> opens_ = 0;
    std::atomic<int> writers_ = 0;
    int direct_writers_ = 0;  // under mutex_
    std::atomic<bool> superseded_ = false;
    std::atomic<bool> room_short_ = false;
    std::atomic<int> write_error_ = 0;
};

}  // namespace diofs

#pragma once
// The pages the kernel caches of the mount's own files (the FUSE side of a dbopt mount that is
// not strict), held to a small window per open file.
//
// Such a file is not FOPEN_DIRECT_IO: a small read() is served by the kernel's page cache, which
// asks the daemon for whole read-ahead windows (the daemon answers them from its own O_DIRECT
// read-ahead, never the backing file's page cache), and a write() goes through the same pages to
// the daemon at once (write-through: the kernel's writeback cache stays off). One kernel mapping
// per inode keeps every descriptor of the file coherent, as on any filesystem.
//
// What the kernel keeps is dropped behind the requests (fuse_lowlevel_notify_inval_inode) by a
// thread of its own: the kernel may wait there for a page that a request still being served
// holds locked, and a FUSE worker thread must never wait for that, or the worker that would
// serve the request could be the one waiting. Every request served through an open file widens
// the file's Span; when the span is wider than a quarter of the window, all of it but an eighth
// of the window behind and ahead of the request is dropped, so an open file has about a quarter
// of the window plus one request plus the kernel's read-ahead in flight (read_ahead()) cached, and
// the rest of the window is the margin for the drops to keep up. At every close (flush) and at
// release the pages of the whole file are dropped. The thread starts with the first drop, so in
// the process that serves the mount (after the fork into the background).

#include "diofs/io/chunk.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace diofs {

class KernelPages {
public:
    // Tells the kernel to drop the pages of [offset, offset + length) of the inode it knows as
    // `ino` (length 0: to the end of the file). 0 or -errno (-ENOENT: it does not know it).
    using Invalidate = std::function<int(uint64_t ino, uint64_t offset, uint64_t length)>;

    // What one open file may have left in the kernel's page cache: [begin, end).
    class Span {
        friend class KernelPages;
        std::mutex mutex_;  // requests of one open file are served side by side
        uint64_t begin_ = 0, end_ = 0;
        uint64_t ticket_ = 0;  // of its last drop
    };

    // `window`: bytes per open file (see above), at least 1 MiB.
    KernelPages(uint64_t window, size_t page_size, Invalidate invalidate);
    ~KernelPages();
    KernelPages(const KernelPages&) = delete;
    KernelPages& operator=(const KernelPages&) = delete;

    uint64_t window() const { return window_; }
    // The kernel's read-ahead for the mount's files (the size of its read requests): what is
    // kept behind and ahead of a request, an eighth of the window, at most one chunk (FUSE's
    // largest request). 128 KiB, the kernel's own default, for the default window.
    uint64_t read_ahead() const { return std::min<uint64_t>(window_ / 8, kChunk); }

    // After a read request of [begin, end) through an open file of `ino`: drops what falls
    // out of the file's window. Never waits. Returns the ticket of the file's drop before this
    // one when this request asked for another (0: nothing to wait for), for wait_for().
    uint64_t served(Span& span, uint64_t ino, uint64_t begin, uint64_t end);
    // After the reply (the kernel then holds none of the request's pages locked): waits until
    // the drop `ticket` is made, when the drops fall behind a fast reader, but never for long
    // (20 ms): the kernel may be waiting for a request this thread would serve next.
    void wait_for(uint64_t ticket);
    // At a close (flush) and at release: every page of `ino`. Never waits for the kernel.
    void drop_all(uint64_t ino);
    // After a WRITE of the writeback window: the pages of [offset, offset + length) of `ino`
    // (whole pages). Never waits for the kernel.
    void drop(uint64_t ino, uint64_t offset, uint64_t length) { enqueue({ino, offset, length}); }

    // Waits until every drop asked for before the call was made (tests; not from a FUSE worker).
    void wait_idle();
    // Ends the thread at the end of the session: the drops not made are forgotten, later ones
    // ignored.
    void stop();

    // Drops made since the start (each one notification to the kernel).
    uint64_t drops_made() const;

private:
    struct Drop {
        uint64_t ino, offset, length;  // length 0: to the end of the file
        uint64_t ticket = 0;
    };
    // Returns the drop's ticket (drops are made in the order of their tickets).
    uint64_t enqueue(Drop drop);
    void run();

    const uint64_t window_;
    const uint64_t page_size_;
    const Invalidate invalidate_;
    // Guards everything below (thread_ until stopping_ is set: no thread starts after that).
    mutable std::mutex mutex_;
    std::condition_variable wake_, idle_;
    std::deque<Drop> queue_;
    bool busy_ = false;  // the thread is making a drop
    bool stopping_ = false;
    uint64_t tickets_ = 0;  // given out
    uint64_t made_ = 0;     // the ticket of the last drop made
    uint64_t count_ = 0;    // drops made
    std::thread thread_;  // started by the first drop
};

}  // namespace diofs

#include "diofs/io/kernel_pages.hpp"

#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace diofs {

KernelPages::KernelPages(uint64_t window, size_t page_size, Invalidate invalidate)
    : window_(window), page_size_(page_size), invalidate_(std::move(invalidate)) {}

KernelPages::~KernelPages() { stop(); }

uint64_t KernelPages::served(Span& span, uint64_t ino, uint64_t begin, uint64_t end) {
    Drop behind{ino, 0, 0}, ahead{ino, 0, 0};
    std::lock_guard lock(span.mutex_);
    if (span.begin_ == span.end_) {
        span.begin_ = begin;
        span.end_ = end;
        return 0;
    }
    span.begin_ = std::min(span.begin_, begin);
    span.end_ = std::max(span.end_, end);
    if (span.end_ - span.begin_ <= window_ / 4)
        return 0;
    {
        // Kept: an eighth of the window behind the request (the kernel asks for the next
        // read-ahead window, 128 KiB, when the reader enters the one before it) and ahead of
        // it, in whole pages.
        const uint64_t keep = window_ / 8;
        const uint64_t keep_begin =
            std::max(span.begin_, (begin > keep ? begin - keep : 0) / page_size_ * page_size_);
        const uint64_t keep_end =
            std::min(span.end_, (end + keep + page_size_ - 1) / page_size_ * page_size_);
        if (span.begin_ < keep_begin) {
            behind.offset = span.begin_ / page_size_ * page_size_;
            behind.length = keep_begin - behind.offset;
        }
        if (keep_end < span.end_) {
            ahead.offset = keep_end;
            ahead.length = span.end_ - keep_end;
        }
        span.begin_ = keep_begin;
        span.end_ = keep_end;
    }
    const uint64_t previous = span.ticket_;
    if (behind.length)
        span.ticket_ = enqueue(behind);
    if (ahead.length)
        span.ticket_ = enqueue(ahead);
    return previous;
}

void KernelPages::wait_for(uint64_t ticket) {
    if (ticket == 0)
        return;
    std::unique_lock lock(mutex_);
    idle_.wait_for(lock, std::chrono::milliseconds(20),
                   [&] { return stopping_ || made_ >= ticket; });
}

void KernelPages::drop_all(uint64_t ino) { enqueue({ino, 0, 0}); }

uint64_t KernelPages::enqueue(Drop drop) {
    {
        std::lock_guard lock(mutex_);
        if (stopping_)
            return 0;
        // A drop of the whole file already waiting covers this one.
        for (const Drop& d : queue_)
            if (d.ino == drop.ino && d.offset == 0 && d.length == 0)
                return d.ticket;
        drop.ticket = ++tickets_;
        queue_.push_back(drop);
        // Started at the first drop, not when the mount is made: the daemon forks into the
        // background (fuse_daemonize) after that, and a thread does not survive a fork.
        if (!thread_.joinable())
            thread_ = std::thread([this] {
                // Ahead of the programs whose pages it drops, where the daemon may (as root):
                // the window holds only while the drops keep up with a reader.
                ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), -10);
                run();
            });
    }
    wake_.notify_one();
    return drop.ticket;
}

void KernelPages::run() {
    std::unique_lock lock(mutex_);
    while (true) {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_)
            return;
        const Drop drop = queue_.front();
        queue_.pop_front();
        busy_ = true;
        lock.unlock();
        const int rv = invalidate_(drop.ino, drop.offset, drop.length);
        // ENOENT: the kernel forgot the inode, and its pages with it.
        if (rv < 0 && rv != -ENOENT)
            spdlog::debug("dropping the kernel's pages of inode {:#x} at {} (+{}): {}", drop.ino,
                          drop.offset, drop.length, std::strerror(-rv));
        lock.lock();
        busy_ = false;
        made_ = drop.ticket;
        ++count_;
        idle_.notify_all();
    }
}

void KernelPages::wait_idle() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [this] { return stopping_ || (queue_.empty() && !busy_); });
}

void KernelPages::stop() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        queue_.clear();
    }
    wake_.notify_all();
    idle_.notify_all();
    if (thread_.joinable())
        thread_.join();
}

uint64_t KernelPages::drops_made() const {
    std::lock_guard lock(mutex_);
    return count_;
}

}  // namespace diofs

#include "diofs/io/write_behind.hpp"

#include "diofs/counters.hpp"
#include "diofs/error_boundary.hpp"
#include "diofs/io/io_split.hpp"
#include "diofs/io/partial_transfers.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

namespace diofs {

struct WriteBehind::Chunk {
    Chunk(uint64_t s, std::unique_ptr<PooledBuffer> b) : start(s), buffer(std::move(b)) {}
    uint64_t start;
    size_t length = 0;
    std::unique_ptr<PooledBuffer> buffer;
    std::shared_ptr<const Credentials> who;  // of the last write into the chunk
    uint64_t end() const { return start + length; }
};

WriteBehind::WriteBehind(Sink sink, BufferPool& pool, IoWorkers& workers, uint64_t window,
                         uint32_t alignment, Reserve reserve, std::string name)
    : sink_(std::move(sink)),
      reserve_(std::move(reserve)),
      pool_(pool),
      workers_(workers),
      chunk_(pool.chunk()),
      max_chunks_(std::max<size_t>(2, window / pool.chunk())),
      alignment_(alignment),
      name_(std::move(name)) {}

WriteBehind::~WriteBehind() {
    std::unique_lock lock(mutex_);
    settle_locked(lock);
    if (error_ < 0 && !error_told_)
        spdlog::error("{}: a coalesced write failed after the file was closed ({}): nobody "
                      "was left to tell",
                      name_, std::strerror(-error_));
}

std::unique_ptr<PooledBuffer> WriteBehind::buffer_locked(std::unique_lock<std::mutex>* lock) {
    for (;;) {
        if (spare_)
            return std::move(spare_);
        if (queue_.size() + 1 < max_chunks_)
            if (auto buffer = pool_.take())
                return std::make_unique<PooledBuffer>(pool_, std::move(*buffer));
        if (!lock || queue_.empty())
            return nullptr;  // not to wait, or nothing of this file's to wait for
        written_.wait(*lock);
    }
}

void WriteBehind::submit_locked(std::unique_ptr<Chunk> chunk) {
    if (!chunk || chunk->length == 0)
        return;
    queue_.push_back(std::move(chunk));
    if (!draining_) {
        draining_ = true;
        workers_.post([this] { drain(); });
    }
}

void WriteBehind::submit_full_locked() {
    // The stream goes on: the part past the last aligned boundary starts the next chunk, so
    // that every later chunk starts aligned and is written with direct I/O alone. Only when a
    // buffer is at hand without waiting (a wait would let other writers in between).
    const uint64_t cut = round_down(filling_->end(), alignment_);
    std::unique_ptr<Chunk> full = std::move(filling_);
    if (cut > full->start && cut < full->end()) {
        if (auto buffer = buffer_locked(nullptr)) {
            auto carry = std::make_unique<Chunk>(cut, std::move(buffer));
            carry->length = full->end() - cut;
            carry->who = full->who;
            std::memcpy(carry->buffer->data(), full->buffer->data() + (cut - full->start),
                        carry->length);
            full->length = cut - full->start;
            filling_ = std::move(carry);
        }
    }
    submit_locked(std::move(full));
}

ssize_t WriteBehind::write(const char* buf, size_t length, uint64_t offset,
                           std::shared_ptr<const Credentials> who) {
    std::unique_lock lock(mutex_);
    if (error_ < 0) {
        error_told_ = true;
        return error_;
    }
    if (reserve_ && length > 0 && !room_.covers(offset, length)) {
        // Under the lock: the writes of one file reach here one at a time anyway (the kernel
        // holds the inode lock over a FUSE direct write), and a writeout never needs it while
        // it writes.
        const RoomReservation::Stream::Ask ask = room_.ask(offset, length, chunk_);
        Room room;
        {
            std::optional<AsCredentials> as_writer;
            if (who)
                as_writer.emplace(*who);
            room = reserve_(ask.offset, ask.length, ask.ahead);
        }
        if (room.error < 0)
            return room.error;
        if (room.write_through) {
            // The caller writes these bytes at once: what was taken before goes first, or it
            // could land on top of them later.
            settle_locked(lock);
            error_told_ = error_ < 0;
            return error_;
        }
        room_.reserved(offset, length, room.end);
    }
    size_t done = 0;
    while (done < length) {
        if (!filling_ || filling_->end() != offset + done) {
            submit_locked(std::move(filling_));  // the stream does not go on here
            auto buffer = buffer_locked(&lock);
            // A writeout that failed while this write waited for memory dropped what was
            // pending, this write's bytes too: it takes nothing more and reports the failure.
            if (error_ < 0) {
                spare_ = std::move(buffer);
                error_told_ = true;
                return error_;
            }
            if (!buffer)
                break;  // the mount's memory is taken: the caller writes the rest itself
            // Another writer of this file may have started a chunk while this one waited.
            submit_locked(std::move(filling_));
            filling_ = std::make_unique<Chunk>(offset + done, std::move(buffer));
        }
        const size_t n = std::min(length - done, chunk_ - filling_->length);
        std::memcpy(filling_->buffer->data() + filling_->length, buf + done, n);
        filling_->length += n;
        filling_->who = who;
        done += n;
        if (filling_->length == chunk_)
            submit_full_locked();
    }
    if (done > 0)
        ::clock_gettime(CLOCK_REALTIME_COARSE, &last_write_);
    return static_cast<ssize_t>(done);
}

int WriteBehind::write_out(const Chunk& chunk) {
    // The error boundary of a writeout: what goes wrong becomes this file's error, never the
    // end of the I/O thread (and of the daemon, with every write it holds).
    try {
        AsCredentials as_writer(chunk.who ? *chunk.who : Credentials{});
        const Transferred out =
            transfer_all(chunk.length, ShortCount::again(), [&](uint64_t done, uint64_t asked) {
                return sink_(chunk.buffer->data() + done, asked, chunk.start + done);
            });
        if (out.error < 0)
            return out.error;
        return out.done < chunk.length ? -EIO : 0;  // the sink wrote nothing, and said no error
    } catch (...) {
        return current_exception_errno(
            fmt::format("{}: writing out {} bytes at offset {}", name_, chunk.length, chunk.start));
    }
}

void WriteBehind::fail_locked(const Chunk& chunk, int error) {
    // Later bytes must not land after a gap: what is pending is dropped, and the file stays
    // in error (see the header).
    uint64_t dropped_end = chunk.end();
    for (const auto& c : queue_)
        dropped_end = std::max(dropped_end, c->end());
    if (filling_)
        dropped_end = std::max(dropped_end, filling_->end());
    spdlog::error("{}: writing out {} bytes at offset {} failed: {}; the bytes held for "
                  "[{}, {}) are dropped and the open file stays in error until closed",
                  name_, chunk.length, chunk.start, std::strerror(-error), chunk.start,
                  dropped_end);
    if (error_ == 0) {
        error_ = error;
        error_told_ = false;
    }
    queue_.clear();
    filling_.reset();
}

void WriteBehind::drain() {
    std::unique_lock lock(mutex_);
    while (!queue_.empty()) {
        const Chunk& chunk = *queue_.front();
        lock.unlock();
        const int error = write_out(chunk);
        (error < 0 ? counters().writeout_errors : counters().chunks_written).add();
        lock.lock();
        std::unique_ptr<Chunk> finished = std::move(queue_.front());
        queue_.pop_front();
        if (error < 0)
            fail_locked(*finished, error);
        if (!spare_)
            spare_ = std::move(finished->buffer);
        written_.notify_all();
    }
    draining_ = false;
    written_.notify_all();
}

void WriteBehind::settle_locked(std::unique_lock<std::mutex>& lock) {
    submit_locked(std::move(filling_));
    written_.wait(lock, [this] { return queue_.empty() && !draining_; });
    // Memory kept for a stream goes back to the mount between streams.
    spare_.reset();
}

void WriteBehind::settle() {
    std::unique_lock lock(mutex_);
    settle_locked(lock);
}

void WriteBehind::forget_room() {
    std::lock_guard lock(mutex_);
    room_.forget();
}

void WriteBehind::give_back_room(const std::function<void()>& give_back) {
    std::unique_lock lock(mutex_);
    settle_locked(lock);
    give_back();
    room_.forget();
}

int WriteBehind::error() {
    std::lock_guard lock(mutex_);
    if (error_ < 0)
        error_told_ = true;
    return error_;
}

std::pair<uint64_t, uint64_t> WriteBehind::pending() const {
    std::lock_guard lock(mutex_);
    uint64_t begin = UINT64_MAX, end = 0;
    auto add = [&](const Chunk& c) {
        if (c.length == 0)
            return;
        begin = std::min(begin, c.start);
        end = std::max(end, c.end());
    };
    for (const auto& c : queue_)
        add(*c);
    if (filling_)
        add(*filling_);
    return end == 0 ? std::pair<uint64_t, uint64_t>{0, 0} : std::pair{begin, end};
}

timespec WriteBehind::last_write() const {
    std::lock_guard lock(mutex_);
    return last_write_;
}

}  // namespace diofs

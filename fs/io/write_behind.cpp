#include "diofs/write_behind.hpp"

#include "diofs/io_split.hpp"

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
                         uint32_t alignment)
    : sink_(std::move(sink)),
      pool_(pool),
      workers_(workers),
      chunk_(pool.chunk()),
      max_chunks_(std::max<size_t>(2, window / pool.chunk())),
      alignment_(alignment) {}

WriteBehind::~WriteBehind() {
    settle();
    if (int error = take_error(); error < 0)
        spdlog::error("a coalesced write failed after the file was closed: {}", std::strerror(-error));
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
    if (error_ < 0 && !error_told_) {
        error_told_ = true;
        return error_;
    }
    // A writeout that fails while this write waits for memory drops what was pending, this
    // write's bytes too: it then takes nothing more and reports the failure.
    const uint64_t failures_before = failures_;
    size_t done = 0;
    while (done < length) {
        if (!filling_ || filling_->end() != offset + done) {
            submit_locked(std::move(filling_));  // the stream does not go on here
            auto buffer = buffer_locked(&lock);
            if (failures_ != failures_before) {
                spare_ = std::move(buffer);
                error_told_ = true;
                return last_failure_;
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
    return static_cast<ssize_t>(done);
}

void WriteBehind::drain() {
    std::unique_lock lock(mutex_);
    while (!queue_.empty()) {
        Chunk& chunk = *queue_.front();
        lock.unlock();
        int error = 0;
        {
            std::optional<AsCredentials> as_writer;
            if (chunk.who)
                as_writer.emplace(*chunk.who);
            size_t done = 0;
            while (done < chunk.length) {
                ssize_t n = sink_(chunk.buffer->data() + done, chunk.length - done,
                                  chunk.start + done);
                if (n <= 0) {
                    error = n < 0 ? static_cast<int>(n) : -EIO;
                    break;
                }
                done += static_cast<size_t>(n);
            }
        }
        lock.lock();
        std::unique_ptr<Chunk> finished = std::move(queue_.front());
        queue_.pop_front();
        if (error < 0) {
            // Later bytes must not land after a gap: what is pending is dropped, and the
            // error waits for the next write, fsync or close.
            if (error_ == 0) {
                error_ = error;
                error_told_ = false;
            }
            last_failure_ = error;
            ++failures_;
            queue_.clear();
            filling_.reset();
        }
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

int WriteBehind::take_error() {
    std::lock_guard lock(mutex_);
    return std::exchange(error_, 0);
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

}  // namespace diofs

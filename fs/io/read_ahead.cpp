#include "diofs/io/read_ahead.hpp"

#include "diofs/error_boundary.hpp"
#include "diofs/io/io_split.hpp"
#include "diofs/io/partial_transfers.hpp"

#include <algorithm>
#include <cstring>

namespace diofs {

struct ReadAhead::Chunk {
    Chunk(uint64_t o, uint64_t g, BufferPool& pool, AlignedBuffer b)
        : offset(o), generation(g), buffer(pool, std::move(b)) {}
    const uint64_t offset;
    const uint64_t generation;  // InodeIo's, when the read was issued
    PooledBuffer buffer;
    size_t valid = 0;  // bytes read
    int error = 0;
    bool done = false;
    bool end_answered = false;  // a request past the end of the file (valid < chunk) answered
};

ReadAhead::ReadAhead(Source source, InodeIo& inode, BufferPool& pool, IoWorkers& workers,
                     uint64_t window, uint64_t alignment, Size size)
    : source_(std::move(source)),
      size_(std::move(size)),
      inode_(inode),
      pool_(pool),
      workers_(workers),
      window_(window),
      alignment_(alignment),
      chunk_(pool.chunk()) {}

ReadAhead::~ReadAhead() {
    std::unique_lock lock(mutex_);
    drop_locked();
    filled_.wait(lock, [this] { return reading_ == 0; });
}

void ReadAhead::drop() {
    std::lock_guard lock(mutex_);
    drop_locked();
}

void ReadAhead::drop_locked() {
    // A chunk still being read stays alive with its worker and goes back to the pool after.
    chunks_.clear();
    end_ = UINT64_MAX;
}

size_t ReadAhead::chunks() const {
    std::lock_guard lock(mutex_);
    return chunks_.size();
}

void ReadAhead::fill(const std::shared_ptr<Chunk>& chunk) {
    // A short count off alignment, or none, is the end of the file; one on alignment may not be
    // (DirectIoEngine::read asks again too). So a chunk short of its size ends where the file
    // ended, and read() answers a request past it from the chunk.
    const Transferred in = transfer_all(
        chunk_, ShortCount::stops_off(alignment_), [&](uint64_t got, uint64_t want) -> ssize_t {
            try {
                return source_(chunk->buffer.data() + got, want, chunk->offset + got);
            } catch (...) {
                // The reader finds the chunk failed and reads the file itself.
                return current_exception_errno("a read-ahead read");
            }
        });
    std::lock_guard lock(mutex_);
    chunk->valid = in.done;
    chunk->error = in.error;
    chunk->done = true;
    // The file ends in this chunk: no need to read past it, unless the chunk was dropped
    // meanwhile (a new stream knows nothing of this one's end).
    if (in.done < chunk_ && !in.error &&
        std::find(chunks_.begin(), chunks_.end(), chunk) != chunks_.end())
        end_ = std::min(end_, chunk->offset + in.done);
    --reading_;
    filled_.notify_all();
}

void ReadAhead::start_locked(uint64_t offset, uint64_t generation) {
    auto buffer = pool_.take();
    if (!buffer)
        return;
    auto chunk = std::make_shared<Chunk>(offset, generation, pool_, std::move(*buffer));
    chunks_.push_back(chunk);
    ++reading_;
    workers_.post([this, chunk] { fill(chunk); });
}

void ReadAhead::issue_locked(uint64_t until) {
    const std::optional<uint64_t> generation = inode_.quiet_generation();
    if (!generation || chunks_.empty())
        return;  // a write is under way: read directly until it is done
    for (uint64_t next = chunks_.back()->offset + chunk_; next < until && next < end_;
         next += chunk_) {
        const size_t before = chunks_.size();
        start_locked(next, *generation);
        if (chunks_.size() == before)
            return;  // the mount's memory for buffers is taken
    }
}

std::optional<ssize_t> ReadAhead::read(uint64_t offset, size_t length, ReadView& view) {
    view = {};
    if (window_ == 0 || length == 0)
        return std::nullopt;
    std::unique_lock lock(mutex_);
    if (!chunks_.empty() && !inode_.unchanged_since(chunks_.front()->generation))
        drop_locked();
    const uint64_t first = round_down(offset, chunk_);
    // Sequential: where the last request ended, or inside the chunks of the stream (the kernel
    // sends its read-ahead requests two at a time, and they may come in either order).
    const bool held = !chunks_.empty() && first >= chunks_.front()->offset &&
                      first <= chunks_.back()->offset;
    if (offset != next_ && !held) {
        next_ = offset + length;
        drop_locked();
        return std::nullopt;
    }
    next_ = held ? std::max(next_, offset + length) : offset + length;
    // The chunk before this request's stays, for a request of it that comes late.
    while (!chunks_.empty() && chunks_.front()->offset + chunk_ < first)
        chunks_.pop_front();
    if (!chunks_.empty() && (first < chunks_.front()->offset || first > chunks_.back()->offset))
        drop_locked();
    if (chunks_.empty()) {
        // Start the stream with the chunk of this request, and nothing past the end of file.
        if (const std::optional<uint64_t> generation = inode_.quiet_generation()) {
            if (size_)
                end_ = size_();
            start_locked(first, *generation);
        }
        if (chunks_.empty())
            return std::nullopt;
    }
    issue_locked(offset + length + window_);

    // Both chunks the request may need, taken now: while this thread waits, another read of
    // the same file may move the chunks on or drop them.
    const size_t index = static_cast<size_t>((first - chunks_.front()->offset) / chunk_);
    std::shared_ptr<Chunk> chunk = chunks_[index];
    std::shared_ptr<Chunk> next = chunks_.size() > index + 1 ? chunks_[index + 1] : nullptr;
    auto wait_for = [&](const std::shared_ptr<Chunk>& c) -> bool {
        filled_.wait(lock, [&] { return c->done; });
        // A change through the mount while it was read (or while this thread waited) makes it
        // worthless: the caller reads the file itself.
        if (c->error || !inode_.unchanged_since(c->generation)) {
            drop_locked();
            return false;
        }
        return true;
    };
    if (!wait_for(chunk))
        return std::nullopt;
    const uint64_t skip = offset - chunk->offset;
    if (skip + length <= chunk->valid) {
        view.data = chunk->buffer.data() + skip;
        view.length = length;
        view.pin = chunk;
        return static_cast<ssize_t>(length);
    }
    if (chunk->valid < chunk_) {
        // The file ends in this chunk. A request that starts before the end is answered up to
        // it, as a read of the file would be: left to the caller, the file's last bytes were
        // read a second time, and the kernel's last request of nearly every file reaches past
        // its end (grep -r of 13,573 small files read 426 MB for 265 MB, issue 19). One that
        // starts at or past the end is the caller's, which asks the file.
        if (skip >= chunk->valid || !take_end_locked(*chunk))
            return std::nullopt;
        view.data = chunk->buffer.data() + skip;
        view.length = chunk->valid - skip;
        view.pin = chunk;
        return static_cast<ssize_t>(view.length);
    }
    // The request goes on into the next chunk (a chunk never ends short of its size before the
    // end of file). Joined in this thread's buffer: rare when requests divide the chunk size.
    std::shared_ptr<Chunk> second = next && wait_for(next) ? next : nullptr;
    if (!second || (skip + length > chunk_ + second->valid && second->valid == chunk_))
        return std::nullopt;  // beyond what is read: the caller asks the file
    const size_t n = std::min<uint64_t>(length, chunk_ + second->valid - skip);
    if (n < length && !take_end_locked(*second))
        return std::nullopt;
    const size_t from_first = chunk_ - skip;
    if (n <= from_first) {  // the file ends where this request's chunk does
        view.data = chunk->buffer.data() + skip;
        view.length = n;
        view.pin = chunk;
        return static_cast<ssize_t>(n);
    }
    thread_local AlignedBuffer joined;
    joined.reserve(64, length);
    std::memcpy(joined.data(), chunk->buffer.data() + skip, from_first);
    std::memcpy(joined.data() + from_first, second->buffer.data(), n - from_first);
    view.data = joined.data();
    view.length = n;
    return static_cast<ssize_t>(n);
}

bool ReadAhead::take_end_locked(Chunk& chunk) {
    // The end a chunk found is answered once. A second request past it is a reader back at the
    // end (one following a file that grows, written beside the mount), which must ask the file
    // and see the new bytes, not this chunk's end for as long as the stream lasts: the stream
    // goes. Requests inside the chunk are still served until then (the kernel's last two
    // requests of a file may come in either order).
    if (chunk.end_answered) {
        drop_locked();
        return false;
    }
    chunk.end_answered = true;
    return true;
}

}  // namespace diofs

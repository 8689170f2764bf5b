#pragma once
// Fakes for the unit tests of read-ahead and write coalescing: an in-memory backing file that
// WriteBehind writes into (a Sink) and ReadAhead reads from (a Source), which can be made to
// fail (a fault-injecting backend) or to hold its callers until released (to build the
// interleavings of a worker and a writer on purpose), and which records every call.

#include "diofs/io/write_behind.hpp"

#include <gtest/gtest.h>

#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace diofs {

// The bytes of a pseudo-random stream, `n` of them, none of them 0 (a 0 in a file is a byte
// that nobody wrote).
inline std::string pattern(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s)
        c = static_cast<char>(1 + rng() % 255);
    return s;
}

class FakeBacking {
public:
    struct Call {
        uint64_t offset;
        size_t length;
        ssize_t result;
    };

    // --- what the code under test calls ---------------------------------------------------

    // WriteBehind's sink.
    ssize_t write(const char* buf, size_t length, uint64_t offset) {
        std::unique_lock lock(mutex_);
        ++entered_;
        entered_cv_.notify_all();
        in_flight_ = in_flight_ + 1;
        max_in_flight_ = std::max(max_in_flight_, in_flight_);
        opened_.wait(lock, [&] { return !held_; });
        ssize_t result = static_cast<ssize_t>(length);
        if (fail_from_ && offset + length > *fail_from_) {
            // Up to the failing offset the bytes land (a short count), then the error.
            result = offset < *fail_from_ ? static_cast<ssize_t>(*fail_from_ - offset)
                                          : -fail_errno_;
            if (once_ && result < 0)
                fail_from_.reset();
        }
        if (delay_.count() > 0) {
            lock.unlock();
            std::this_thread::sleep_for(delay_);
            lock.lock();
        }
        if (result > 0) {
            if (data_.size() < offset + static_cast<uint64_t>(result))
                data_.resize(offset + static_cast<uint64_t>(result), '\0');
            std::memcpy(data_.data() + offset, buf, static_cast<size_t>(result));
        }
        calls_.push_back(Call{offset, length, result});
        in_flight_ = in_flight_ - 1;
        done_cv_.notify_all();
        return result;
    }

    // WriteBehind's Reserve: room for [offset, offset + length) and `ahead` more, or for the
    // write alone when the capacity ends before, or ENOSPC when the write does not fit.
    WriteBehind::Room reserve(uint64_t offset, uint64_t length, uint64_t ahead) {
        std::lock_guard lock(mutex_);
        reserves_.push_back(Call{offset, static_cast<size_t>(length), static_cast<ssize_t>(ahead)});
        const uint64_t end = offset + length;
        if (capacity_ && end > *capacity_)
            return {-ENOSPC, false, 0};
        if (write_through_)
            return {0, true, 0};
        return {0, false, capacity_ && end + ahead > *capacity_ ? end : end + ahead};
    }

    // ReadAhead's source.
    ssize_t read(char* buf, size_t length, uint64_t offset) {
        std::unique_lock lock(mutex_);
        ++entered_;
        entered_cv_.notify_all();
        opened_.wait(lock, [&] { return !held_; });
        ssize_t result;
        if (delay_.count() > 0) {
            lock.unlock();
            std::this_thread::sleep_for(delay_);
            lock.lock();
        }
        if (fail_from_ && offset <= *fail_from_ && *fail_from_ < offset + length) {
            result = -fail_errno_;
        } else if (offset >= data_.size()) {
            result = 0;
        } else {
            const size_t n =
                std::min<uint64_t>({length, data_.size() - offset, max_read_});
            std::memcpy(buf, data_.data() + offset, n);
            result = static_cast<ssize_t>(n);
        }
        calls_.push_back(Call{offset, length, result});
        done_cv_.notify_all();
        return result;
    }

    // --- what the test sets up and looks at ------------------------------------------------

    // Every call from `offset` on fails with -err (a write across it lands up to it first); with
    // `once`, only the first such call.
    void fail_from(uint64_t offset, int err = ENOSPC, bool once = false) {
        std::lock_guard lock(mutex_);
        fail_from_ = offset;
        fail_errno_ = err;
        once_ = once;
    }
    // Reservations past `bytes` fail with ENOSPC (nothing: no limit).
    void set_capacity(std::optional<uint64_t> bytes) {
        std::lock_guard lock(mutex_);
        capacity_ = bytes;
    }
    // Whether reserve() says to write through (the room cannot be made sure of).
    void set_write_through(bool yes) {
        std::lock_guard lock(mutex_);
        write_through_ = yes;
    }
    std::vector<Call> reserves() const {
        std::lock_guard lock(mutex_);
        return reserves_;
    }
    void heal() {
        std::lock_guard lock(mutex_);
        fail_from_.reset();
    }
    // Callers wait inside the call (after being counted) until open().
    void hold() {
        std::lock_guard lock(mutex_);
        held_ = true;
    }
    void open() {
        {
            std::lock_guard lock(mutex_);
            held_ = false;
        }
        opened_.notify_all();
    }
    void set_delay(std::chrono::microseconds d) {
        std::lock_guard lock(mutex_);
        delay_ = d;
    }
    // Waits (at most 10 s) until `n` calls have entered in all; false on timeout.
    bool wait_entered(size_t n) {
        std::unique_lock lock(mutex_);
        return entered_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_ >= n; });
    }
    // Waits (at most 10 s) until `n` calls have finished in all; false on timeout.
    bool wait_calls(size_t n) {
        std::unique_lock lock(mutex_);
        return done_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return calls_.size() >= n; });
    }
    size_t entered() const {
        std::lock_guard lock(mutex_);
        return entered_;
    }

    // Reads return at most `bytes` (a multiple of the alignment: a direct read may stop short
    // there before the end of the file).
    void short_reads(uint64_t bytes) {
        std::lock_guard lock(mutex_);
        max_read_ = bytes;
    }
    void set_contents(std::string s) {
        std::lock_guard lock(mutex_);
        data_ = std::move(s);
    }
    void put(uint64_t offset, const std::string& s) {
        std::lock_guard lock(mutex_);
        if (data_.size() < offset + s.size())
            data_.resize(offset + s.size(), '\0');
        std::memcpy(data_.data() + offset, s.data(), s.size());
    }
    std::string contents() const {
        std::lock_guard lock(mutex_);
        return data_;
    }
    std::vector<Call> calls() const {
        std::lock_guard lock(mutex_);
        return calls_;
    }
    int max_in_flight() const {
        std::lock_guard lock(mutex_);
        return max_in_flight_;
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable opened_, entered_cv_, done_cv_;
    std::string data_;
    std::vector<Call> calls_, reserves_;
    std::optional<uint64_t> capacity_;
    bool write_through_ = false;
    std::optional<uint64_t> fail_from_;
    int fail_errno_ = ENOSPC;
    bool once_ = false;
    bool held_ = false;
    size_t entered_ = 0;
    int in_flight_ = 0, max_in_flight_ = 0;
    std::chrono::microseconds delay_{0};
    uint64_t max_read_ = UINT64_MAX;
};

// "" when equal, else where they first differ.
inline std::string difference(const std::string& got, const std::string& want) {
    if (got == want)
        return "";
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i])
        ++i;
    return "first difference at offset " + std::to_string(i) + " (got " +
           std::to_string(got.size()) + " bytes, expected " + std::to_string(want.size()) + ")";
}

}  // namespace diofs

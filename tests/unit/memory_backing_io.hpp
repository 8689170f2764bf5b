#pragma once
// A backing file in memory for the unit tests of the engine and of DirectFile, on synthetic
// sector and page sizes. A MemoryFile is the file (bytes, mode, modification time, the room
// reserved in it, a disk capacity, injected faults); a MemoryBackingIo is one open file's
// BackingIo onto it, as a pair of descriptors is, counting its own calls. Direct calls refuse
// what O_DIRECT would refuse (EINVAL). A bounce write rewrites whole pages, read first and
// written back later, as the page cache does: two bounce writes into one page at the same time
// would lose one of them, unless the caller keeps them apart.

#include "diofs/io/backing_io.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace diofs {

// A device under one or more MemoryFiles that notes whether a read and a write were ever under
// way at the same time. Each direct transfer (outside the file's lock, as a transfer does not
// hold the file) lasts until a transfer of the other kind is under way too, or `patience` has
// passed: so a caller that overlaps reads and writes is seen doing it however the threads are
// scheduled, and one that does not never is.
struct DeviceModel {
    std::chrono::microseconds patience{0};
    std::atomic<int> reads{0}, writes{0};
    std::atomic<bool> read_and_write_at_once{false};

    // One direct transfer, for its lifetime.
    class Transfer {
    public:
        Transfer(DeviceModel* device, bool write) : device_(device), write_(write) {
            if (!device_)
                return;
            ++(write_ ? device_->writes : device_->reads);
            const auto deadline = std::chrono::steady_clock::now() + device_->patience;
            while (!(device_->reads.load() > 0 && device_->writes.load() > 0)) {
                if (std::chrono::steady_clock::now() >= deadline)
                    return;
                std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
            device_->read_and_write_at_once = true;
        }
        ~Transfer() {
            if (device_)
                --(write_ ? device_->writes : device_->reads);
        }
        Transfer(const Transfer&) = delete;
        Transfer& operator=(const Transfer&) = delete;

    private:
        DeviceModel* device_;
        bool write_;
    };
};

class MemoryFile {
public:
    MemoryFile(uint32_t sector_size, uint32_t page_size) : sector(sector_size), page(page_size) {}

    const uint32_t sector, page;

    // --- what a test sets up and looks at (each under the file's lock) -----------------------

    std::string contents() const {
        std::lock_guard lock(mutex);
        return data;
    }
    void set_contents(std::string s) {
        std::lock_guard lock(mutex);
        data = std::move(s);
    }
    mode_t mode() const {
        std::lock_guard lock(mutex);
        return mode_bits;
    }
    void set_mode(mode_t m) {
        std::lock_guard lock(mutex);
        mode_bits = m;
    }
    timespec mtime() const {
        std::lock_guard lock(mutex);
        return modified;
    }
    // The furthest byte written or reserved and not freed by a truncate.
    uint64_t allocated_end() const {
        std::lock_guard lock(mutex);
        return allocated;
    }
    // Reservations and writes past `bytes` fail with ENOSPC (nothing: no limit).
    void set_capacity(std::optional<uint64_t> bytes) {
        std::lock_guard lock(mutex);
        capacity = bytes;
    }
    // Every write that reaches past `offset` fails with -err, landing nothing (nothing: heals).
    void fail_writes_from(std::optional<uint64_t> offset, int err = EIO) {
        std::lock_guard lock(mutex);
        fail_from = offset;
        fail_errno = err;
    }
    // What reserve() answers instead of reserving (-EOPNOTSUPP: a filesystem without
    // fallocate); 0: it reserves.
    void set_reserve_error(int err) {
        std::lock_guard lock(mutex);
        reserve_error = err;
    }
    void set_clone_supported(bool yes) {
        std::lock_guard lock(mutex);
        can_clone = yes;
    }
    // The device under the file (nothing: transfers take no time and are not watched). Set
    // before the file is opened.
    std::shared_ptr<DeviceModel> device;
    // Called once by the next stat(), after it has read the size, outside the file's lock: a
    // test's way into the moment between a read of the size and what is done with it.
    void after_next_stat(std::function<void()> call) {
        std::lock_guard lock(mutex);
        after_stat = std::move(call);
    }
    // The sizes truncate() was called with, in order.
    std::vector<uint64_t> truncates() const {
        std::lock_guard lock(mutex);
        return truncated_to;
    }

    // --- for MemoryBackingIo ----------------------------------------------------------------

    mutable std::mutex mutex;  // guards everything below
    std::string data;
    mode_t mode_bits = S_IFREG | 0644;
    timespec modified = {0, 0};
    int64_t clock = 0;  // one tick per change: a truncate stamps a time no write had
    uint64_t allocated = 0;
    std::optional<uint64_t> capacity;
    std::optional<uint64_t> fail_from;
    int fail_errno = EIO;
    int reserve_error = 0;
    bool can_clone = true;
    std::vector<uint64_t> truncated_to;
    std::function<void()> after_stat;

    // The error of a write or reservation that ends at `end`, 0 if none.
    int refusal(uint64_t end, bool writing) const {
        if (writing && fail_from && end > *fail_from)
            return -fail_errno;
        if (capacity && end > *capacity)
            return -ENOSPC;
        return 0;
    }
    // Bytes landed: the end of file, the allocation and the time move; setuid goes, and setgid
    // with group execute, as the kernel clears them for a writer without CAP_FSETID.
    void put(const char* buf, size_t length, uint64_t offset, uint64_t new_size) {
        if (data.size() < offset + length)
            data.resize(offset + length, '\0');
        std::memcpy(data.data() + offset, buf, length);
        data.resize(new_size);
        allocated = std::max<uint64_t>(allocated, new_size);
        modified = {++clock, 0};
        mode_bits &= ~static_cast<mode_t>(S_ISUID);
        if (mode_bits & S_IXGRP)
            mode_bits &= ~static_cast<mode_t>(S_ISGID);
    }
};

class MemoryBackingIo : public BackingIo {
public:
    // A file of its own.
    MemoryBackingIo(uint32_t sector, uint32_t page)
        : MemoryBackingIo(std::make_shared<MemoryFile>(sector, page)) {}
    // One more open file of `file`.
    explicit MemoryBackingIo(std::shared_ptr<MemoryFile> file) : file_(std::move(file)) {}

    ssize_t direct_pread(char* buf, size_t length, uint64_t offset) override {
        if (!aligned(buf, length, offset))
            return -EINVAL;
        DeviceModel::Transfer transfer(file_->device.get(), false);
        std::lock_guard lock(file_->mutex);
        ++direct_calls;
        const std::string& data = file_->data;
        if (offset >= data.size())
            return 0;
        size_t n = std::min<uint64_t>(length, data.size() - offset);
        std::memcpy(buf, data.data() + offset, n);
        return static_cast<ssize_t>(n);
    }

    ssize_t direct_pwrite(const char* buf, size_t length, uint64_t offset) override {
        if (!aligned(buf, length, offset))
            return -EINVAL;
        DeviceModel::Transfer transfer(file_->device.get(), true);
        std::lock_guard lock(file_->mutex);
        ++direct_calls;
        if (int err = refuse(length, offset))
            return err;
        file_->put(buf, length, offset, std::max<uint64_t>(file_->data.size(), offset + length));
        return static_cast<ssize_t>(length);
    }

    ssize_t bounce_pwrite(const char* buf, size_t length, uint64_t offset) override {
        const uint64_t page = file_->page;
        uint64_t begin = offset / page * page;
        uint64_t end = (offset + length + page - 1) / page * page;
        std::string pages;
        {
            std::lock_guard lock(file_->mutex);
            ++bounce_calls;
            if (int err = refuse(length, offset))
                return err;
            if (begin < file_->data.size())
                pages = file_->data.substr(begin, end - begin);
        }
        std::this_thread::yield();  // the window in which another writer of the page loses
        pages.resize(end - begin, '\0');
        std::memcpy(pages.data() + (offset - begin), buf, length);
        std::lock_guard lock(file_->mutex);
        // The page beyond the end of the file is not part of it.
        file_->put(pages.data(), end - begin, begin,
                   std::max<uint64_t>(file_->data.size(), offset + length));
        return static_cast<ssize_t>(length);
    }

    bool is_direct() const override { return true; }

    int stat(Status& out) override {
        std::function<void()> after;
        {
            std::lock_guard lock(file_->mutex);
            out = {file_->data.size(), file_->mode_bits, file_->modified};
            after = std::exchange(file_->after_stat, nullptr);
        }
        if (after)
            after();
        return 0;
    }

    int reserve(uint64_t offset, uint64_t length) override {
        std::lock_guard lock(file_->mutex);
        ++reserve_calls;
        if (file_->reserve_error)
            return file_->reserve_error;
        if (int err = file_->refusal(offset + length, false))
            return err;
        file_->allocated = std::max(file_->allocated, offset + length);
        return 0;
    }

    int64_t free_space() override {
        std::lock_guard lock(file_->mutex);
        if (!file_->capacity)
            return int64_t{1} << 40;
        return static_cast<int64_t>(*file_->capacity - std::min(*file_->capacity, file_->allocated));
    }

    int truncate(uint64_t size) override {
        std::lock_guard lock(file_->mutex);
        file_->truncated_to.push_back(size);
        file_->data.resize(size, '\0');
        file_->allocated = std::min(file_->allocated, size);
        file_->modified = {++file_->clock, 0};
        return 0;
    }

    int set_mtime(const timespec& mtime) override {
        std::lock_guard lock(file_->mutex);
        file_->modified = mtime;
        return 0;
    }

    int clone_from(BackingIo& source, uint64_t source_offset, uint64_t length,
                   uint64_t offset) override {
        auto* from = dynamic_cast<MemoryBackingIo*>(&source);
        if (!from)
            return -EXDEV;
        const std::string bytes = from->file_->contents().substr(source_offset, length);
        std::lock_guard lock(file_->mutex);
        ++clone_calls;
        if (!file_->can_clone)
            return -EOPNOTSUPP;
        file_->put(bytes.data(), bytes.size(), offset,
                   std::max<uint64_t>(file_->data.size(), offset + bytes.size()));
        return 0;
    }

    int sync(bool) override {
        ++sync_calls;
        return 0;
    }
    int flush() override { return 0; }

    int drop_end_of_file_page(uint64_t) override {
        ++end_of_file_drops;
        return 0;
    }
    void drop_size_change_pages(uint64_t) override { ++size_change_drops; }

    // The engine tests' shorthands.
    std::string contents() const { return file_->contents(); }
    MemoryFile& file() const { return *file_; }

    // This open file's calls (counted under the file's lock, or from one thread).
    int direct_calls = 0;
    int bounce_calls = 0;
    int reserve_calls = 0;
    int clone_calls = 0;
    int sync_calls = 0;
    int end_of_file_drops = 0;
    int size_change_drops = 0;
    // This open file's writes fail with ENOSPC once they would pass this many bytes in all.
    std::optional<uint64_t> fail_after_bytes;

private:
    bool aligned(const char* buf, size_t length, uint64_t offset) const {
        const uint32_t sector = file_->sector;
        return offset % sector == 0 && length % sector == 0 &&
               reinterpret_cast<uintptr_t>(buf) % sector == 0;
    }
    // Under the file's lock: the error of this write, or 0 (and it is counted).
    int refuse(size_t length, uint64_t offset) {
        if (fail_after_bytes && written_ + length > *fail_after_bytes)
            return -ENOSPC;
        if (int err = file_->refusal(offset + length, true))
            return err;
        written_ += length;
        return 0;
    }

    std::shared_ptr<MemoryFile> file_;
    uint64_t written_ = 0;
};

}  // namespace diofs

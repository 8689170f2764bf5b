#pragma once
// A move-only owner of one file descriptor. The daemon keeps no raw `int fd` members: every
// descriptor it opens lives in one of these, so an early return or an exception cannot leak it.

#include <unistd.h>

#include <utility>

namespace diofs {

class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, kEmpty)) {}
    UniqueFd& operator=(UniqueFd&& other) noexcept {
        if (this != &other)
            reset(std::exchange(other.fd_, kEmpty));
        return *this;
    }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] explicit operator bool() const noexcept { return fd_ != kEmpty; }

    // Gives the descriptor up to a new owner (fdopendir, say) without closing it.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, kEmpty); }

    // Closes what is held (errors of close are not interesting here: flush() reports them to
    // the caller through a duplicate, see close_report.hpp) and takes `fd` instead.
    void reset(int fd = kEmpty) noexcept {
        if (fd_ != kEmpty)
            ::close(fd_);
        fd_ = fd;
    }

private:
    static constexpr int kEmpty = -1;
    int fd_ = kEmpty;
};

}  // namespace diofs

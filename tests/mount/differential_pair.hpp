#pragma once
// What the randomized differential testers (random_differential_test, dbopt_differential_test)
// share: the mount and the reference directory, a seeded generator, slots of descriptors open
// on both sides, and the comparison of what a call did on each side. Each tester derives from
// DifferentialPair with its own Slot (which must have `int m, r, flags` defaulting to -1, -1, 0)
// and adds its own operations.

#include "test_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <utility>

namespace diofs_test {

template <typename Slot, size_t kSlots>
class DifferentialPair {
public:
    DifferentialPair(std::string mnt, std::string ref, uint64_t seed)
        : mnt_(std::move(mnt)), ref_(std::move(ref)), rng_(seed) {}
    ~DifferentialPair() {
        for (auto& s : slots_)
            close_slot(s);
    }
    DifferentialPair(const DifferentialPair&) = delete;
    DifferentialPair& operator=(const DifferentialPair&) = delete;

    // Why the two sides disagreed ("" while they agree).
    const std::string& failure() const { return failure_; }
    // How many results were compared, and how many of them were successes.
    long checked() const { return checked_; }
    long succeeded() const { return succeeded_; }

protected:
    int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
    long long uniform_ll(long long lo, long long hi) {
        return std::uniform_int_distribution<long long>(lo, hi)(rng_);
    }
    Slot& any_slot() {
        return slots_[static_cast<size_t>(uniform(0, static_cast<int>(kSlots) - 1))];
    }

    std::string m(const std::string& rel) const { return mnt_ + "/" + rel; }
    std::string r(const std::string& rel) const { return ref_ + "/" + rel; }

    bool fail(const std::string& why) {
        failure_ = "operation #" + std::to_string(index_) + ": " + why;
        return false;
    }
    bool check(const std::string& what, const Outcome& om, const Outcome& orf) {
        ++checked_;
        succeeded_ += om.ok();
        if (om == orf)
            return true;
        std::ostringstream s;
        s << what << ": through the mount " << om << ", on the reference " << orf;
        return fail(s.str());
    }
    // `f(fd)` on the descriptor of each side of `s`, compared.
    template <typename F>
    bool on_both_fds(const Slot& s, const std::string& what, F&& f) {
        return check(what, capture([&] { return f(s.m); }), capture([&] { return f(s.r); }));
    }

    static void close_slot(Slot& s) {
        if (s.m >= 0)
            ::close(s.m);
        if (s.r >= 0)
            ::close(s.r);
        s = Slot{};
    }

    // Opens `rel` with `opened.flags` on both sides into `s` (closing what it held) and keeps
    // `opened` (the caller's fields) with the two descriptors; the results must agree (both
    // failures leave `s` empty).
    bool open_into_slot(Slot& s, Slot opened, const std::string& rel, const std::string& what) {
        close_slot(s);
        const int flags = opened.flags;
        Outcome om = capture([&] { return ::open(m(rel).c_str(), flags | O_CLOEXEC, 0644); });
        Outcome orf = capture([&] { return ::open(r(rel).c_str(), flags | O_CLOEXEC, 0644); });
        s = std::move(opened);
        if (om.ok())
            s.m = static_cast<int>(om.rv);
        if (orf.ok())
            s.r = static_cast<int>(orf.rv);
        if (om.ok() != orf.ok() || om.err != orf.err) {
            std::ostringstream d;
            d << what << ": through the mount " << om << ", on the reference " << orf;
            return fail(d.str());
        }
        ++checked_;
        succeeded_ += om.ok();
        if (!om.ok())
            s = Slot{};
        return true;
    }

    // Closes both descriptors of the open slot `s`, empties it and compares the results.
    bool close_both(Slot& s, const std::string& what) {
        Outcome om = capture([&] { return ::close(std::exchange(s.m, -1)); });
        Outcome orf = capture([&] { return ::close(std::exchange(s.r, -1)); });
        s = Slot{};
        return check(what, om, orf);
    }

    const std::string mnt_, ref_;
    std::mt19937_64 rng_;
    std::array<Slot, kSlots> slots_;
    std::string bm_, br_;  // read buffers: through the mount, on the reference
    long index_ = 0;       // the operation under way
    long checked_ = 0, succeeded_ = 0;
    std::string failure_;
};

}  // namespace diofs_test

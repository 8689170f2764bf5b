// The one loop over partial transfers (transfer_all) and the one EINTR loop (sys::restarting),
// against scripted calls: short counts asked again or ending the loop, EINTR retried, an error
// after some bytes (the count) and before any (the error), the end of the file, and the most
// one call is asked for.

#include "diofs/io/partial_transfers.hpp"
#include "diofs/syscalls.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <utility>
#include <vector>

namespace diofs {
namespace {

// A call that answers from a script, one answer per call, and notes what it was asked. An
// answer of kAll moves everything asked.
constexpr ssize_t kAll = INT32_MAX;

struct Scripted {
    explicit Scripted(std::vector<ssize_t> script) : answers(std::move(script)) {}

    std::vector<ssize_t> answers;
    std::vector<std::pair<uint64_t, uint64_t>> asked;  // (done, asked) of each call

    ssize_t operator()(uint64_t done, uint64_t want) {
        asked.emplace_back(done, want);
        const size_t i = asked.size() - 1;
        if (i >= answers.size())
            return 0;
        return answers[i] == kAll ? static_cast<ssize_t>(want) : answers[i];
    }
};

TEST(TransferAll, AShortCountIsAskedAgainForTheRest) {
    Scripted call{{3, 4, kAll}};
    const Transferred t = transfer_all(10, ShortCount::again(), std::ref(call));
    EXPECT_EQ(t.done, 10u);
    EXPECT_EQ(t.error, 0);
    EXPECT_EQ(t.count_or_error(), 10);
    EXPECT_EQ(call.asked, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 10}, {3, 7}, {7, 3}}));
}

TEST(TransferAll, AnErrorAfterSomeBytesGivesTheCountAndBeforeAnyTheError) {
    Scripted after{{4, -EIO}};
    const Transferred t = transfer_all(10, ShortCount::again(), std::ref(after));
    EXPECT_EQ(t.done, 4u);
    EXPECT_EQ(t.error, -EIO);
    EXPECT_EQ(t.count_or_error(), 4);
    EXPECT_EQ(after.asked.size(), 2u) << "called again after an error";

    Scripted before{{-ENOSPC}};
    const Transferred u = transfer_all(10, ShortCount::again(), std::ref(before));
    EXPECT_EQ(u.done, 0u);
    EXPECT_EQ(u.count_or_error(), -ENOSPC);
}

TEST(TransferAll, NothingMovedIsTheEndOfTheFile) {
    Scripted call{{6, 0, kAll}};
    const Transferred t = transfer_all(10, ShortCount::again(), std::ref(call));
    EXPECT_EQ(t.done, 6u);
    EXPECT_EQ(t.error, 0);
    EXPECT_EQ(t.count_or_error(), 6);
    EXPECT_EQ(call.asked.size(), 2u);

    Scripted empty{{0}};
    EXPECT_EQ(transfer_all(10, ShortCount::again(), std::ref(empty)).count_or_error(), 0);
}

TEST(TransferAll, AShortCountCanBeTheLast) {
    Scripted call{{6, kAll}};
    const Transferred t = transfer_all(10, ShortCount::stops(), std::ref(call));
    EXPECT_EQ(t.done, 6u);
    EXPECT_EQ(t.error, 0);
    EXPECT_EQ(call.asked.size(), 1u);
}

// A direct read ends off alignment only at the end of the file: a short count on an aligned
// boundary is asked again, one off it is the end.
TEST(TransferAll, AShortCountOffAlignmentIsTheLast) {
    Scripted aligned{{8, 16, 3, kAll}};
    const Transferred t = transfer_all(64, ShortCount::stops_off(8), std::ref(aligned));
    EXPECT_EQ(t.done, 27u);
    EXPECT_EQ(aligned.asked,
              (std::vector<std::pair<uint64_t, uint64_t>>{{0, 64}, {8, 56}, {24, 40}}));
}

TEST(TransferAll, EachCallIsAskedForAtMostPerCall) {
    Scripted call{{kAll, kAll, kAll}};
    const Transferred t = transfer_all(10, ShortCount::stops(), std::ref(call), 4);
    EXPECT_EQ(t.done, 10u);
    EXPECT_EQ(call.asked, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 4}, {4, 4}, {8, 2}}));
    // Within a step, a count short of the step is short.
    Scripted shorter{{4, 3, kAll}};
    EXPECT_EQ(transfer_all(10, ShortCount::stops(), std::ref(shorter), 4).done, 7u);
    EXPECT_EQ(shorter.asked.size(), 2u);
}

TEST(TransferAll, NothingToMoveCallsNothing) {
    Scripted call{{kAll}};
    EXPECT_EQ(transfer_all(0, ShortCount::again(), std::ref(call)).count_or_error(), 0);
    EXPECT_TRUE(call.asked.empty());
}

TEST(Restarting, AnInterruptedCallIsMadeAgainAndOtherErrorsAreNot) {
    int calls = 0;
    EXPECT_EQ(sys::restarting([&]() -> ssize_t { return ++calls < 3 ? -EINTR : 5; }), 5);
    EXPECT_EQ(calls, 3);
    calls = 0;
    const auto fails = [&]() -> ssize_t {
        ++calls;
        return -EIO;
    };
    EXPECT_EQ(sys::restarting(fails), -EIO);
    EXPECT_EQ(calls, 1);
}

// Both loops together, as the backing I/O's pread and pwrite use them: EINTR after some bytes
// is neither an error nor the end.
TEST(TransferAll, InterruptedCallsInsideTheLoopAreRetried) {
    Scripted call{{2, -EINTR, -EINTR, 3, kAll}};
    const Transferred t = transfer_all(10, ShortCount::again(), [&](uint64_t done, uint64_t asked) {
        return sys::restarting([&] { return call(done, asked); });
    });
    EXPECT_EQ(t.done, 10u);
    EXPECT_EQ(t.error, 0);
    EXPECT_EQ(call.asked.size(), 5u);
}

}  // namespace
}  // namespace diofs

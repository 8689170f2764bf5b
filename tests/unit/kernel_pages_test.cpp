// KernelPages: which ranges of the kernel's page cache an open file asks to drop, over a fake
// kernel that records them and keeps a set of cached pages as the real one would.

#include "diofs/io/kernel_pages.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace diofs {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kWindow = 1 << 20;

// The kernel's cache of one file, as pages, and the drops asked of it.
struct FakeKernel {
    std::mutex mutex;
    std::set<uint64_t> pages;  // page numbers cached
    std::vector<std::pair<uint64_t, uint64_t>> drops;  // offset, length (0: to the end)
    std::atomic<int> calls = 0;

    KernelPages::Invalidate invalidate() {
        return [this](uint64_t, uint64_t offset, uint64_t length) {
            std::lock_guard lock(mutex);
            drops.emplace_back(offset, length);
            const uint64_t first = offset / kPage;
            const uint64_t last = length == 0 ? UINT64_MAX : (offset + length - 1) / kPage;
            pages.erase(pages.lower_bound(first), last == UINT64_MAX ? pages.end() : pages.upper_bound(last));
            ++calls;
            return 0;
        };
    }
    // The kernel caches what a request reads.
    void cache(uint64_t begin, uint64_t end) {
        std::lock_guard lock(mutex);
        for (uint64_t p = begin / kPage; p * kPage < end; ++p)
            pages.insert(p);
    }
    size_t cached() {
        std::lock_guard lock(mutex);
        return pages.size();
    }
};

TEST(KernelPages, SequentialReaderKeepsAQuarterWindowAndDropsBehind) {
    FakeKernel kernel;
    KernelPages pages(kWindow, kPage, kernel.invalidate());
    KernelPages::Span span;
    size_t peak = 0;
    constexpr uint64_t kRequest = 128 << 10;
    for (uint64_t off = 0; off < (64u << 20); off += kRequest) {
        kernel.cache(off, off + kRequest);
        pages.served(span, 1, off, off + kRequest);
        pages.wait_idle();
        peak = std::max(peak, kernel.cached());
    }
    // After each request: an eighth of the window behind it, and the request.
    EXPECT_LE(peak * kPage, kWindow / 4 + kRequest);
    EXPECT_GT(kernel.calls.load(), 100);
    // Nothing dropped to the end of the file while it is read in order.
    std::lock_guard lock(kernel.mutex);
    for (const auto& [offset, length] : kernel.drops)
        EXPECT_NE(length, 0u) << "a drop to the end of the file while reading";
}

TEST(KernelPages, ARandomReaderIsBoundedToo) {
    FakeKernel kernel;
    KernelPages pages(kWindow, kPage, kernel.invalidate());
    KernelPages::Span span;
    uint64_t x = 12345;
    size_t peak = 0;
    for (int i = 0; i < 2000; ++i) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const uint64_t off = (x >> 20) % (256u << 20) / kPage * kPage;
        const uint64_t len = ((x >> 8) % 32 + 1) * kPage;
        kernel.cache(off, off + len);
        pages.served(span, 1, off, off + len);
        pages.wait_idle();
        peak = std::max(peak, kernel.cached());
    }
    EXPECT_LE(peak * kPage, kWindow / 4 + 2 * 32 * kPage);
}

TEST(KernelPages, DropAllDropsTheWholeFileOnceWhileWaiting) {
    std::mutex gate;
    std::unique_lock held(gate);
    std::vector<std::pair<uint64_t, uint64_t>> seen;
    std::mutex seen_mutex;
    KernelPages pages(kWindow, kPage, [&](uint64_t ino, uint64_t offset, uint64_t length) {
        std::lock_guard wait_for_the_test(gate);
        std::lock_guard lock(seen_mutex);
        seen.emplace_back(ino, offset + length);
        return 0;
    });
    pages.drop_all(7);  // taken by the thread, which waits at the gate
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    pages.drop_all(8);
    pages.drop_all(8);  // covered by the one waiting
    pages.drop_all(7);
    held.unlock();
    pages.wait_idle();
    EXPECT_EQ(pages.drops_made(), 3u);
    std::lock_guard lock(seen_mutex);
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[0].first, 7u);
    EXPECT_EQ(seen[1].first, 8u);
    EXPECT_EQ(seen[2].first, 7u);
}

TEST(KernelPages, AfterStopNothingIsAskedOfTheKernel) {
    FakeKernel kernel;
    KernelPages pages(kWindow, kPage, kernel.invalidate());
    pages.stop();
    pages.drop_all(1);
    KernelPages::Span span;
    for (uint64_t off = 0; off < (8u << 20); off += 65536)
        pages.wait_for(pages.served(span, 1, off, off + 65536));  // nor wait for a thread gone
    pages.wait_idle();
    EXPECT_EQ(kernel.calls.load(), 0);
}

// The daemon is made, then forks into the background (fuse_daemonize): the process that serves
// the mount must still make the drops. A thread started before the fork would not be there, and
// the child would wait for it for ever (here: until the alarm ends it).
TEST(KernelPages, DropsAreMadeInAProcessForkedAfterTheStart) {
    FakeKernel kernel;
    KernelPages pages(kWindow, kPage, kernel.invalidate());
    const pid_t child = ::fork();
    ASSERT_GE(child, 0) << std::strerror(errno);
    if (child == 0) {
        ::alarm(10);
        pages.drop_all(1);
        pages.wait_idle();
        ::_exit(kernel.calls.load() == 1 ? 0 : 3);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child) << std::strerror(errno);
    EXPECT_TRUE(WIFEXITED(status)) << "the child was ended by signal "
                                   << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                   << " (SIGALRM: no thread made the drop)";
    EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0) << "3: the drop was not made once";
    EXPECT_EQ(kernel.calls.load(), 0) << "the parent made a drop it was never asked for";
}

// A reader faster than the drops: after a request that asks for a drop, the thread waits
// (briefly) for the file's drop before it, so the drops cannot fall behind by more than one.
TEST(KernelPages, AReaderWaitsForItsPreviousDrop) {
    std::atomic<int> made = 0;
    KernelPages pages(kWindow, kPage, [&](uint64_t, uint64_t, uint64_t) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        ++made;
        return 0;
    });
    KernelPages::Span span;
    int requests = 0, most_behind = 0;
    for (uint64_t off = 0; off < (16u << 20); off += 128 << 10) {
        pages.wait_for(pages.served(span, 1, off, off + (128 << 10)));
        // From the third request on, each one drops what falls out of the window.
        most_behind = std::max(most_behind, ++requests - 2 - made.load());
    }
    pages.wait_idle();
    EXPECT_GT(made.load(), 50);
    EXPECT_LE(most_behind, 3) << "the drops fell behind the reader";
}

}  // namespace
}  // namespace diofs

#include "diofs/io/io_split.hpp"

#include <gtest/gtest.h>

#include <random>

namespace diofs {
namespace {

TEST(Rounding, WorkedExamples) {
    EXPECT_EQ(round_down(5000, 4096), 4096u);
    EXPECT_EQ(round_up(5000, 4096), 8192u);
    EXPECT_EQ(round_up(8192, 4096), 8192u);
    EXPECT_EQ(round_down(8192, 4096), 8192u);
    EXPECT_EQ(round_up(0, 512), 0u);
    EXPECT_EQ(round_up(1, 8), 8u);
    EXPECT_TRUE(is_power_of_two(512));
    EXPECT_FALSE(is_power_of_two(0));
    EXPECT_FALSE(is_power_of_two(1536));
}

struct Case {
    uint64_t offset, length, align;
    Extent head, body, tail;
};

class SplitTable : public ::testing::TestWithParam<Case> {};

TEST_P(SplitTable, Splits) {
    const Case& c = GetParam();
    IoSplit s = split_io(c.offset, c.length, c.align);
    EXPECT_EQ(s.head, c.head) << "head";
    EXPECT_EQ(s.body, c.body) << "body";
    EXPECT_EQ(s.tail, c.tail) << "tail";
}

// {offset, length, align, head, body, tail}
INSTANTIATE_TEST_SUITE_P(
    Cases, SplitTable,
    ::testing::Values(
        Case{0, 0, 8, {}, {}, {}},                        // nothing
        Case{0, 8, 8, {}, {0, 8}, {}},                    // one aligned block
        Case{0, 64, 8, {}, {0, 64}, {}},                  // several aligned blocks
        Case{3, 2, 8, {3, 2}, {}, {}},                    // inside one block
        Case{3, 5, 8, {3, 5}, {}, {}},                    // ends on a boundary
        Case{0, 5, 8, {}, {}, {0, 5}},                    // starts on one, short
        Case{5, 6, 8, {5, 3}, {}, {8, 3}},                // straddles a boundary
        Case{5, 19, 8, {5, 3}, {8, 16}, {}},              // head and body
        Case{8, 19, 8, {}, {8, 16}, {24, 3}},             // body and tail
        Case{5, 22, 8, {5, 3}, {8, 16}, {24, 3}},         // all three
        Case{4095, 2, 4096, {4095, 1}, {}, {4096, 1}},    // one byte each side
        Case{1, 4096, 4096, {1, 4095}, {}, {4096, 1}},    // a block's worth, shifted
        Case{9680, 16384, 512, {9680, 48}, {9728, 15872}, {25600, 464}},
        Case{1805 * 16384, 9680, 4096, {}, {1805 * 16384, 8192}, {1805 * 16384 + 8192, 1488}},
        Case{7, 1, 64, {7, 1}, {}, {}}));                 // the one-byte writer

TEST(Split, PiecesCoverTheRequestInOrder) {
    std::mt19937_64 rng(42);
    for (int i = 0; i < 100000; ++i) {
        uint64_t align = uint64_t{1} << (rng() % 13);
        uint64_t offset = rng() % 100000, length = rng() % 20000;
        IoSplit s = split_io(offset, length, align);
        uint64_t at = offset;
        for (const Extent& e : {s.head, s.body, s.tail}) {
            if (e.empty())
                continue;
            ASSERT_EQ(e.offset, at) << offset << "+" << length << " align " << align;
            at = e.end();
        }
        ASSERT_EQ(at, offset + length);
        ASSERT_EQ(s.body.offset % align, 0u);
        ASSERT_EQ(s.body.length % align, 0u);
        ASSERT_LT(s.head.length, align);
        ASSERT_LT(s.tail.length, align);
        if (!s.tail.empty()) {
            ASSERT_EQ(s.tail.offset % align, 0u);
        }
    }
}

}  // namespace
}  // namespace diofs

#include "diofs/io/dio_alignment.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

namespace diofs {
namespace {

// Probes that answer what a test says and count how often the device is asked.
struct FakeSystem {
    StatxDioAnswer statx;
    std::optional<uint32_t> sector;
    int sector_calls = 0;

    AlignmentProbes probes() {
        return {[this](int) { return statx; },
                [this](dev_t) {
                    ++sector_calls;
                    return sector;
                }};
    }
};

TEST(AlignmentDiscovery, StatxOnLinux61) {
    FakeSystem sys{{true, 4096, 512}, 512};
    AlignmentDiscovery d(sys.probes(), std::nullopt);
    auto r = d.discover(3, 42);
    ASSERT_TRUE(r.alignment);
    EXPECT_EQ(*r.alignment, (DioAlignment{4096, 512}));
    EXPECT_EQ(r.source, AlignmentSource::statx);
    EXPECT_EQ(sys.sector_calls, 0);
}

TEST(AlignmentDiscovery, StatxSaysNoDirectIo) {
    FakeSystem sys{{true, 0, 0}, 512};
    AlignmentDiscovery d(sys.probes(), std::nullopt);
    auto r = d.discover(3, 42);
    EXPECT_FALSE(r.alignment);
    EXPECT_EQ(r.source, AlignmentSource::statx);
}

TEST(AlignmentDiscovery, NoStatxFallsBackToTheDeviceCachedPerDevice) {
    FakeSystem sys{{}, 4096};
    AlignmentDiscovery d(sys.probes(), std::nullopt);
    for (int i = 0; i < 3; ++i) {
        auto r = d.discover(3, 42);
        ASSERT_TRUE(r.alignment);
        EXPECT_EQ(*r.alignment, (DioAlignment{4096, 4096}));
        EXPECT_EQ(r.source, AlignmentSource::block_device);
    }
    EXPECT_EQ(sys.sector_calls, 1) << "the device is asked once";
    d.discover(3, 43);
    EXPECT_EQ(sys.sector_calls, 2) << "another device is asked again";
}

TEST(AlignmentDiscovery, NoStatxNoDeviceUsesTheDefault) {
    FakeSystem sys{{}, std::nullopt};
    AlignmentDiscovery d(sys.probes(), std::nullopt);
    auto r = d.discover(3, 42);
    ASSERT_TRUE(r.alignment);
    EXPECT_EQ(r.alignment->offset, kDefaultDioAlignment);
    EXPECT_EQ(r.source, AlignmentSource::fallback);
}

TEST(AlignmentDiscovery, OddValuesAreRejected) {
    // statx answers nonsense: the device is asked instead.
    for (auto bad : {StatxDioAnswer{true, 1536, 512}, StatxDioAnswer{true, 512, 0},
                     StatxDioAnswer{true, 512, 3}, StatxDioAnswer{true, 1u << 24, 512}}) {
        FakeSystem sys{bad, 512};
        AlignmentDiscovery d(sys.probes(), std::nullopt);
        auto r = d.discover(3, 42);
        ASSERT_TRUE(r.alignment);
        EXPECT_EQ(*r.alignment, (DioAlignment{512, 512}));
        EXPECT_EQ(r.source, AlignmentSource::block_device);
    }
    // and a nonsensical device size gives the default.
    FakeSystem sys{{}, 520};
    AlignmentDiscovery d(sys.probes(), std::nullopt);
    EXPECT_EQ(d.discover(3, 42).source, AlignmentSource::fallback);
}

TEST(AlignmentDiscovery, OptionOverridesEverything) {
    FakeSystem sys{{true, 512, 512}, 512};
    AlignmentDiscovery d(sys.probes(), 8192);
    auto r = d.discover(3, 42);
    ASSERT_TRUE(r.alignment);
    EXPECT_EQ(*r.alignment, (DioAlignment{8192, 8192}));
    EXPECT_EQ(r.source, AlignmentSource::option);
}

TEST(AlignmentDiscovery, OptionNeverGoesBelowWhatTheDeviceNeeds) {
    FakeSystem sys{{true, 4096, 4096}, 4096};
    AlignmentDiscovery d(sys.probes(), 512);
    auto r = d.discover(3, 42);
    ASSERT_TRUE(r.alignment);
    EXPECT_EQ(*r.alignment, (DioAlignment{4096, 4096}));
    EXPECT_EQ(r.source, AlignmentSource::statx);
    EXPECT_TRUE(r.option_below_requirement);

    FakeSystem no_statx{{}, 4096};
    AlignmentDiscovery d2(no_statx.probes(), 1024);
    EXPECT_EQ(d2.discover(3, 42).alignment->offset, 4096u);
}

TEST(AlignmentDiscovery, OptionReplacesTheDefaultGuess) {
    FakeSystem sys{{}, std::nullopt};
    AlignmentDiscovery d(sys.probes(), 512);
    auto r = d.discover(3, 42);
    ASSERT_TRUE(r.alignment);
    EXPECT_EQ(*r.alignment, (DioAlignment{512, 512}));
    EXPECT_EQ(r.source, AlignmentSource::option);
    EXPECT_FALSE(r.option_below_requirement);
}

TEST(AlignmentDiscovery, OptionCannotTurnOnDirectIo) {
    FakeSystem sys{{true, 0, 0}, 512};
    AlignmentDiscovery d(sys.probes(), 4096);
    EXPECT_FALSE(d.discover(3, 42).alignment);
}

TEST(AlignmentDiscovery, OptionKeepsTheMemoryAlignmentTheDeviceNeeds) {
    FakeSystem sys{{true, 512, 4096}, 512};
    AlignmentDiscovery d(sys.probes(), 8192);
    EXPECT_EQ(*d.discover(3, 42).alignment, (DioAlignment{8192, 8192}));
    AlignmentDiscovery d2(sys.probes(), 1024);
    EXPECT_EQ(*d2.discover(3, 42).alignment, (DioAlignment{1024, 4096}));
}

TEST(DioAlignOption, Validation) {
    EXPECT_FALSE(dio_align_option_error(512));
    EXPECT_FALSE(dio_align_option_error(4096));
    EXPECT_FALSE(dio_align_option_error(1u << 20));
    EXPECT_TRUE(dio_align_option_error(0));
    EXPECT_TRUE(dio_align_option_error(256));
    EXPECT_TRUE(dio_align_option_error(1000));
    EXPECT_TRUE(dio_align_option_error(1u << 21));
}

TEST(AlignmentDiscovery, RealProbesOnARegularFile) {
    // Whatever this machine's filesystem says, the answer is usable or "no direct I/O".
    char path[] = "/tmp/diofs-align-XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    struct stat st;
    ASSERT_EQ(::fstat(fd, &st), 0);
    AlignmentDiscovery d(system_alignment_probes(), std::nullopt);
    auto r = d.discover(fd, st.st_dev);
    ::close(fd);
    ::unlink(path);
    if (r.alignment) {
        EXPECT_EQ(r.alignment->offset & (r.alignment->offset - 1), 0u);
        EXPECT_GE(r.alignment->offset, 1u);
    }
}

}  // namespace
}  // namespace diofs

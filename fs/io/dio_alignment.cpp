#include "diofs/io/dio_alignment.hpp"

#include "diofs/io/io_split.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <fstream>
#include <string>

namespace diofs {
namespace {

bool usable(uint64_t value) { return is_power_of_two(value) && value <= kMaxDioAlignment; }

StatxDioAnswer statx_probe(int fd) {
    struct statx stx;
    if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0 ||
        !(stx.stx_mask & STATX_DIOALIGN))
        return {};
    return {true, stx.stx_dio_offset_align, stx.stx_dio_mem_align};
}

// /sys/dev/block/MAJ:MIN is the device itself or, for a partition, a directory inside the
// whole disk's, whose queue/ holds the sector size.
std::optional<uint32_t> sysfs_sector_size(dev_t dev) {
    if (::major(dev) == 0)
        return std::nullopt;  // tmpfs, overlayfs, NFS...: no block device
    std::string base = "/sys/dev/block/" + std::to_string(::major(dev)) + ":" +
                       std::to_string(::minor(dev));
    for (const char* rel : {"/queue/logical_block_size", "/../queue/logical_block_size"}) {
        std::ifstream in(base + rel);
        uint64_t size = 0;
        if (in >> size && size > 0)
            return static_cast<uint32_t>(size);
    }
    return std::nullopt;
}

}  // namespace

AlignmentProbes system_alignment_probes() { return {statx_probe, sysfs_sector_size}; }

std::optional<const char*> dio_align_option_error(uint64_t value) {
    if (!is_power_of_two(value))
        return "must be a power of two";
    if (value < kMinDioAlignOption)
        return "must be at least 512";
    if (value > kMaxDioAlignment)
        return "must be at most 1048576";
    return std::nullopt;
}

const char* to_string(AlignmentSource source) {
    switch (source) {
        case AlignmentSource::option: return "dio_align option";
        case AlignmentSource::statx: return "statx(STATX_DIOALIGN)";
        case AlignmentSource::block_device: return "block device sector size";
        case AlignmentSource::fallback: return "default";
    }
    return "?";
}

AlignmentDiscovery::AlignmentDiscovery(AlignmentProbes probes, std::optional<uint32_t> option)
    : probes_(std::move(probes)), option_(option) {}

std::optional<uint32_t> AlignmentDiscovery::device_sector_size(dev_t dev) {
    {
        std::lock_guard lock(mutex_);
        if (auto it = device_cache_.find(dev); it != device_cache_.end())
            return it->second;
    }
    std::optional<uint32_t> size = probes_.logical_sector_size(dev);
    if (size && !usable(*size))
        size.reset();
    std::lock_guard lock(mutex_);
    device_cache_.emplace(dev, size);
    return size;
}

DiscoveredAlignment AlignmentDiscovery::discover(int fd, dev_t dev) {
    DiscoveredAlignment found = discover_from_system(fd, dev);
    if (!option_ || !found.alignment)
        return found;
    const bool required = found.source != AlignmentSource::fallback;
    if (required && found.alignment->offset > *option_) {
        found.option_below_requirement = true;
        return found;
    }
    const uint32_t memory = required ? std::max(*option_, found.alignment->memory) : *option_;
    return {DioAlignment{*option_, memory}, AlignmentSource::option};
}

DiscoveredAlignment AlignmentDiscovery::discover_from_system(int fd, dev_t dev) {
    StatxDioAnswer answer = probes_.statx(fd);
    if (answer.answered) {
        if (answer.offset_align == 0)
            return {std::nullopt, AlignmentSource::statx};
        if (usable(answer.offset_align) && usable(answer.mem_align))
            return {DioAlignment{answer.offset_align, answer.mem_align}, AlignmentSource::statx};
    }
    if (auto sector = device_sector_size(dev))
        return {DioAlignment{*sector, *sector}, AlignmentSource::block_device};
    return {DioAlignment{kDefaultDioAlignment, kDefaultDioAlignment}, AlignmentSource::fallback};
}

}  // namespace diofs

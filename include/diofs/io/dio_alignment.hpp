#pragma once
// Where direct-I/O alignment is discovered: the only module that knows sector sizes.
//
// For each backing file, in this order:
//   1. statx(STATX_DIOALIGN) (Linux 6.1+): stx_dio_offset_align for offsets and lengths,
//      stx_dio_mem_align for buffer addresses. A filesystem that answers 0 does not support
//      direct I/O for that file.
//   2. The logical sector size of the block device under the file (sysfs), for kernels or
//      filesystems that do not answer statx; cached per device.
//   3. kDefaultDioAlignment, for files on no block device that did not answer either.
// `-o dio_align=N` replaces what is found, but never lowers it below what statx or the block
// device says the file needs (a smaller value would make every direct request fail with
// EINVAL, which tools must never see), nor turns direct I/O on where statx says the filesystem
// cannot do it. Every value is validated: a power of two, at least 1 and at most
// kMaxDioAlignment, or it is ignored and the next source is asked.
// The probes are injected, so tests can play any kernel and device.

#include "diofs/io/chunk.hpp"

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

namespace diofs {

inline constexpr uint32_t kDefaultDioAlignment = 4096;
// At most one chunk: a chunk is always a whole number of aligned blocks.
inline constexpr uint32_t kMaxDioAlignment = kChunk;
inline constexpr uint32_t kMinDioAlignOption = 512;

struct DioAlignment {
    uint32_t offset = 0;  // offsets and lengths of O_DIRECT I/O: multiples of this
    uint32_t memory = 0;  // buffer addresses: multiples of this
    bool operator==(const DioAlignment&) const = default;
};

// What statx(STATX_DIOALIGN) said about a file.
struct StatxDioAnswer {
    bool answered = false;   // the kernel filled STATX_DIOALIGN
    uint32_t offset_align = 0;  // 0 with answered: no direct I/O for this file
    uint32_t mem_align = 0;
};

struct AlignmentProbes {
    std::function<StatxDioAnswer(int fd)> statx;
    // The logical sector size of the block device `dev`, or nothing (no such device).
    std::function<std::optional<uint32_t>(dev_t dev)> logical_sector_size;
};

// The probes of the running system.
AlignmentProbes system_alignment_probes();

// nullopt, or the reason `value` is not a usable -o dio_align value.
std::optional<const char*> dio_align_option_error(uint64_t value);

enum class AlignmentSource { option, statx, block_device, fallback };
const char* to_string(AlignmentSource source);

struct DiscoveredAlignment {
    // nullopt: the filesystem said it cannot do direct I/O for this file.
    std::optional<DioAlignment> alignment;
    AlignmentSource source = AlignmentSource::fallback;
    bool option_below_requirement = false;  // dio_align was smaller than `alignment`
};

class AlignmentDiscovery {
public:
    AlignmentDiscovery(AlignmentProbes probes, std::optional<uint32_t> option);

    // The alignment of the open backing file `fd`, which lives on device `dev`.
    DiscoveredAlignment discover(int fd, dev_t dev);

private:
    DiscoveredAlignment discover_from_system(int fd, dev_t dev);
    std::optional<uint32_t> device_sector_size(dev_t dev);

    const AlignmentProbes probes_;
    const std::optional<uint32_t> option_;
    // Guards device_cache_; taken alone, around a map lookup or insert only.
    std::mutex mutex_;
    std::map<dev_t, std::optional<uint32_t>> device_cache_;
};

}  // namespace diofs

#pragma once
// A small filesystem of its own for a test: a sparse image file, attached to a loop device with
// the sector size asked for (4096 by default: a "4Kn" disk), formatted (xfs or ext4) and mounted
// on a private temporary directory.
//
//   <tmp>/image   the sparse image
//   <tmp>/fs      where the filesystem is mounted
//
// Teardown is unconditional (destructor, or teardown() before it): it unmounts only what it
// mounted, detaches only the loop device it attached (and only while that device still has its
// own image behind it), and removes its own files. It never looks at other loop devices or
// mounts.

#include "mount_fixture.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace diofs_test {

// Runs `argv` (no shell; argv[0] is looked up in PATH) with stdin from /dev/null and stdout and
// stderr into `output` (when given). Returns the exit status, or -1 when it could not run or
// was killed by a signal (`output` then says why).
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr);

class LoopFilesystem {
public:
    struct Config {
        std::string fstype = "xfs";            // "xfs" or "ext4"
        uint64_t image_bytes = 2ull << 30;     // sparse: only what is written takes space
        unsigned sector_size = 4096;           // the loop device's logical sector size
    };

    LoopFilesystem();
    explicit LoopFilesystem(Config config);
    ~LoopFilesystem();
    LoopFilesystem(const LoopFilesystem&) = delete;
    LoopFilesystem& operator=(const LoopFilesystem&) = delete;

    // Makes the image, attaches, formats and mounts it. "" on success, else what went wrong
    // (whatever was already made is undone before returning).
    std::string setup();
    // Unmounts, detaches and removes; safe to call more than once. Returns a description of
    // anything abnormal ("" when all went well).
    std::string teardown();

    const Config& config() const { return config_; }
    const std::string& device() const { return device_; }      // "/dev/loopN"
    const std::string& mountpoint() const { return mountpoint_; }
    std::string path(const std::string& rel) const { return mountpoint_ + "/" + rel; }

private:
    bool device_is_ours() const;

    Config config_;
    std::string dir_, image_, mountpoint_, device_;
    bool mounted_ = false;
    bool torn_down_ = false;
    // teardown(), should the test never get there (emergency_teardown.hpp).
    EmergencyTeardown emergency_;
};

// Whether loop devices can be made here at all (root, /dev/loop-control, losetup and the mkfs
// of `fstype` in PATH): nothing, or the reason they cannot.
std::optional<std::string> loop_unavailable_reason(const std::string& fstype);

}  // namespace diofs_test

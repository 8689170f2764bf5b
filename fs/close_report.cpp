#include "diofs/close_report.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace diofs {
namespace {

// Filesystems whose files have no flush method in Linux: closing a descriptor of them never
// reports anything. Any other filesystem is asked.
bool says_nothing_at_close(int fd) {
    constexpr std::array<__fsword_t, 6> local = {
        EXT4_SUPER_MAGIC,  // ext2, ext3 and ext4 share it
        XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC, TMPFS_MAGIC, RAMFS_MAGIC, F2FS_SUPER_MAGIC};
    struct statfs st;
    if (::fstatfs(fd, &st) != 0)
        return false;
    return std::find(local.begin(), local.end(), st.f_type) != local.end();
}

}  // namespace

int CloseReport::arm(int fd) {
    needed_ = !says_nothing_at_close(fd);
    if (!needed_)
        return 0;
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return -errno;
    spare_.reset(copy);
    return 0;
}

int CloseReport::flush(int fd) {
    if (!needed_)
        return 0;
    if (!spare_) {
        const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy < 0)
            return 0;  // out of descriptors: the close goes on without the report
        spare_.reset(copy);
    }
    const int rv = ::close(spare_.release()) == 0 ? 0 : -errno;
    const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy >= 0)
        spare_.reset(copy);
    return rv;
}

}  // namespace diofs

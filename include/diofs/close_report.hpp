#pragma once
// What a backing filesystem has to say when a file is closed. Local filesystems (ext4, xfs,
// btrfs, tmpfs...) say nothing at close: their errors come from write and fsync. Network and
// FUSE filesystems (NFS, CIFS, GlusterFS...) write back at close and report a failure there,
// and the close of the FUSE file (its flush) must carry that to the program. Closing a
// duplicate of the backing descriptor asks for it without ending the open file.
//
// The duplicate is made when the file is opened, not when it is closed: a daemon out of
// descriptors then fails an open (EMFILE, ENFILE), never a close.

#include "diofs/unique_fd.hpp"

namespace diofs {

class CloseReport {
public:
    // Prepares the reports of `fd`'s filesystem: nothing to prepare on a filesystem that says
    // nothing at close. 0, or -errno when the duplicate cannot be made (the open fails).
    int arm(int fd);
    // The close-time report of `fd` (the descriptor given to arm()): 0 or -errno. A new
    // duplicate is made for the next flush of the same file (a program that closes one of
    // several descriptors of it); when none can be made now, that next flush tries again, and
    // if it cannot either it reports nothing rather than an error of its own.
    int flush(int fd);

private:
    bool needed_ = false;
    UniqueFd spare_;
};

}  // namespace diofs

#pragma once
// The state of one mount: its options, the root of the backing directory and the inode table.
// One Filesystem lives for the whole session; every request reaches it through
// fuse_req_userdata().

#include "diofs/inode_table.hpp"
#include "diofs/options.hpp"
#include "diofs/unique_fd.hpp"

#include <fuse_lowlevel.h>

#include <memory>
#include <mutex>

namespace diofs {

// An open regular file: the backing descriptor a FUSE file handle (fi->fh) stands for.
struct OpenFile {
    explicit OpenFile(UniqueFd f) : fd(std::move(f)) {}
    const UniqueFd fd;
};

class Filesystem {
public:
    Filesystem(Options options, UniqueFd root_fd, const struct stat& root_st);

    const Options& options() const { return options_; }
    InodeTable& inodes() { return inodes_; }

    // The inode the kernel calls `ino`: FUSE_ROOT_ID is the backing directory itself, every
    // other number is the address of an entry of the inode table.
    Inode& inode(fuse_ino_t ino);

    // Looks `name` up in `parent` without following a symlink and fills `e` for the kernel,
    // taking one lookup reference. Returns 0 or -errno.
    int lookup(Inode& parent, const char* name, fuse_entry_param* e);
    // The same for a file already opened (by create): no second resolution of its name.
    int entry_for_open_file(int fd, fuse_entry_param* e);
    // Gives back `n` lookup references of `ino` (the root has none to give back).
    void forget(fuse_ino_t ino, uint64_t n);

    // How long the kernel may trust names and attributes it was given. Short, because other
    // programs may change the backing directory behind the mount's back.
    double cache_timeout() const { return 1.0; }

private:
    int fill_entry(UniqueFd path_fd, fuse_entry_param* e);

    const Options options_;
    Inode root_;
    InodeTable inodes_;
};

Filesystem& filesystem_of(fuse_req_t req);
OpenFile& open_file_of(const fuse_file_info* fi);

}  // namespace diofs

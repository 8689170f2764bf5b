#include "diofs/filesystem.hpp"

#include "diofs/syscalls.hpp"

#include <cstring>

namespace diofs {

Filesystem::Filesystem(Options options, UniqueFd root_fd, const struct stat& root_st)
    : options_(std::move(options)),
      root_(std::move(root_fd), root_st.st_dev, root_st.st_ino, root_st.st_mode & S_IFMT) {}

Inode& Filesystem::inode(fuse_ino_t ino) {
    if (ino == FUSE_ROOT_ID)
        return root_;
    return *reinterpret_cast<Inode*>(ino);
}

int Filesystem::lookup(Inode& parent, const char* name, fuse_entry_param* e) {
    // The kernel sends "." and ".." only to filesystems that export to NFS, which diofs does
    // not; refusing them keeps a lookup from ever leaving the backing directory.
    if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0)
        return -EINVAL;
    int fd = sys::openat(parent.path_fd.get(), name, O_PATH | O_NOFOLLOW);
    if (fd < 0)
        return fd;
    return fill_entry(UniqueFd(fd), e);
}

int Filesystem::entry_for_open_file(int fd, fuse_entry_param* e) {
    int path_fd = sys::open_via_proc(fd, O_PATH);
    if (path_fd < 0)
        return path_fd;
    return fill_entry(UniqueFd(path_fd), e);
}

int Filesystem::fill_entry(UniqueFd path_fd, fuse_entry_param* e) {
    std::memset(e, 0, sizeof *e);
    int rv = sys::stat_path_fd(path_fd.get(), &e->attr);
    if (rv < 0)
        return rv;
    Inode& inode = inodes_.acquire(std::move(path_fd), e->attr);
    e->ino = reinterpret_cast<fuse_ino_t>(&inode);
    e->attr_timeout = e->entry_timeout = cache_timeout();
    return 0;
}

void Filesystem::forget(fuse_ino_t ino, uint64_t n) {
    if (ino != FUSE_ROOT_ID)
        inodes_.forget(inode(ino), n);
}

Filesystem& filesystem_of(fuse_req_t req) {
    return *static_cast<Filesystem*>(fuse_req_userdata(req));
}

OpenFile& open_file_of(const fuse_file_info* fi) { return *reinterpret_cast<OpenFile*>(fi->fh); }

}  // namespace diofs

#include "diofs/filesystem.hpp"

#include "diofs/caller_credentials.hpp"
#include "diofs/io/posix_backing_io.hpp"
#include "diofs/syscalls.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <tuple>

namespace diofs {

namespace {

// The daemon's descriptor limit now (after raise_descriptor_limit), 0 when unknown.
uint64_t descriptor_limit() {
    rlimit limit;
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
        return 0;
    return limit.rlim_cur;
}

// How many descriptors of inodes with file handles stay open: a quarter of the limit, the
// rest left to open files and directories, and at most 4096, past which reopening an inode
// now and then (one open_by_handle_at) costs less than the kernel's work on a larger table.
size_t descriptor_cache_size(uint64_t limit) {
    if (limit == 0)
        return 4096;
    return static_cast<size_t>(std::clamp<uint64_t>(limit / 4, 16, 4096));
}

}  // namespace

Filesystem::Filesystem(Options options, UniqueFd root_fd, const struct stat& root_st)
    : options_(std::move(options)),
      root_(root_st.st_dev, root_st.st_ino, root_st.st_mode & S_IFMT, std::nullopt),
      inodes_(descriptor_cache_size(descriptor_limit()), descriptor_limit()),
      alignment_(system_alignment_probes(), options_.dio_align),
      page_size_(static_cast<size_t>(::sysconf(_SC_PAGESIZE))) {
    // The root is never forgotten: its descriptor is held for the session.
    root_.fd = std::make_shared<const UniqueFd>(std::move(root_fd));
    learn_device(root_.dev, root_.fd->get());
    if (!inodes_.knows_device(root_.dev))
        spdlog::warn("the backing directory cannot be opened for reading: every inode the "
                     "kernel remembers holds a descriptor");
    if (options_.dbopt && !options_.strict &&
        (options_.read_ahead > 0 || options_.write_behind > 0))
        streaming_ = std::make_unique<Streaming>(options_.dbopt_mem, options_.io_threads,
                                                 options_.read_ahead, options_.write_behind);
    // strict keeps every request a direct transfer, through FOPEN_DIRECT_IO.
    if (options_.dbopt && !options_.strict && options_.cache_window > 0)
        kernel_pages_ = std::make_unique<KernelPages>(
            options_.cache_window, page_size_, [this](uint64_t ino, uint64_t offset, uint64_t length) {
                if (!session_)
                    return -ENOTCONN;
                return fuse_lowlevel_notify_inval_inode(session_, ino, static_cast<off_t>(offset),
                                                        static_cast<off_t>(length));
            });
}

Inode& Filesystem::inode(fuse_ino_t ino) {
    if (ino == FUSE_ROOT_ID)
        return root_;
    return *reinterpret_cast<Inode*>(ino);
}

int Filesystem::path_fd(Inode& inode, PathFd& out) {
    if (&inode == &root_) {
        out = PathFd(root_.fd);
        return 0;
    }
    return inodes_.path_fd(inode, out);
}

int Filesystem::open_inode(Inode& inode, int flags) {
    PathFd fd;
    if (int rv = path_fd(inode, fd); rv < 0)
        return rv;
    return sys::open_via_proc(fd.get(), flags);
}

int Filesystem::lookup(int parent_fd, const char* name, fuse_entry_param* e) {
    // The kernel sends "." and ".." only to filesystems that export to NFS, which diofs does
    // not; refusing them keeps a lookup from ever leaving the backing directory.
    if (std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0)
        return -EINVAL;
    int fd = note_descriptors(sys::openat(parent_fd, name, O_PATH | O_NOFOLLOW), "a lookup");
    if (fd < 0)
        return fd;
    UniqueFd path_fd(fd);
    if (int rv = refuse_own_mount(path_fd.get(), name); rv < 0)
        return rv;
    return fill_entry(std::move(path_fd), e);
}

// A name in the backing directory can lead into this very mount: root bind-mounted the mount
// (or a file or directory in it) there after it was mounted. The O_PATH open crossed into it
// without asking the daemon, but anything more would be a request to the daemon itself: the
// fstat of fill_entry a GETATTR, and every lookup the kernel then sends below that entry one
// more lookup that re-enters the mount, each served by another worker thread that waits in
// turn, until none is left and the mount is wedged for good (umount hangs, kill -9 leaves a
// zombie). So such a name fails with EDEADLK ("Resource deadlock avoided": what it is, where
// ELOOP would send people looking for a symlink), recognised by the device, which the kernel
// gives without a request. Nothing under the name is reachable without re-entering.
int Filesystem::refuse_own_mount(int path_fd, const char* name) {
    dev_t dev;
    if (int rv = sys::cached_device_at(path_fd, "", &dev); rv < 0)
        return rv;
    if (!own_device_ || dev != *own_device_)
        return 0;
    if (!warned_own_mount_.exchange(true))
        spdlog::warn("lookup of '{}' under {} leads back into this mount ({}): a mount made "
                     "inside the backing directory shows the mount again; such lookups fail "
                     "with EDEADLK, or the daemon would wait on itself (logged once)",
                     name, options_.source, options_.mountpoint);
    return -EDEADLK;
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
    // The first directory of another filesystem (mounted below the backing directory) that
    // can be opened for reading lets its inodes be reopened by handle too.
    if (S_ISDIR(e->attr.st_mode) && !inodes_.knows_device(e->attr.st_dev))
        learn_device(e->attr.st_dev, path_fd.get());
    std::optional<FileHandle> handle = FileHandle::of(path_fd.get());
    Inode& inode = inodes_.acquire(std::move(path_fd), e->attr, std::move(handle));
    // An inode with open files may hold writes back: it is stat'ed again, after they are
    // noted. The lookup is counted now: should that stat fail, the first one serves.
    const struct stat first = e->attr;
    stat_shown(inode, [&](struct stat& st) {
        st = first;
        PathFd again;
        if (inode.io.had_open_files() && inodes_.path_fd(inode, again) == 0 &&
            sys::stat_path_fd(again.get(), &st) < 0)
            st = first;
        return 0;
    }, e->attr);
    if (writeback() && inode.type == S_IFREG)
        inode.view.told(e->attr);
    e->ino = reinterpret_cast<fuse_ino_t>(&inode);
    e->attr_timeout = attr_timeout(inode);
    e->entry_timeout = entry_timeout();
    return 0;
}

double Filesystem::attr_timeout(const Inode& inode) const {
    constexpr double kWhileWriting = 24 * 3600;  // what the kernel takes as "until invalidated"
    return writeback() && inode.type == S_IFREG && inode.view.writing() ? kWhileWriting
                                                                         : attr_timeout();
}

// open_by_handle_at needs a descriptor of the filesystem that is not O_PATH: `path_fd`
// reopened for reading, held for the session (that filesystem cannot be unmounted, only
// detached, while diofs serves it). Nothing is noted when it cannot be opened (another
// directory may do). A FUSE filesystem (GlusterFS...) encodes handles, but decodes one only
// while the kernel still has its inode cached, unless its daemon supports exports (ESTALE
// otherwise): its handles are not used, and its inodes keep their descriptors.
void Filesystem::learn_device(dev_t dev, int path_fd) {
    int fd = sys::open_via_proc(path_fd, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return;
    UniqueFd dir(fd);
    struct statfs st;
    if (sys::fstatfs(dir.get(), &st) == 0 && st.f_type == FUSE_SUPER_MAGIC) {
        spdlog::info("device {}:{} is a FUSE filesystem: its inodes hold their descriptors "
                     "while the kernel remembers them (no file handles)",
                     major(dev), minor(dev));
        dir.reset();
    }
    inodes_.add_mount_fd(dev, std::move(dir));
}

void Filesystem::forget(fuse_ino_t ino, uint64_t n) {
    if (ino != FUSE_ROOT_ID)
        inodes_.forget(inode(ino), n);
}

int Filesystem::note_descriptors(int rv, const char* what) {
    if ((rv == -EMFILE || rv == -ENFILE) && !warned_descriptors_.exchange(true))
        spdlog::warn("{} failed: {} (limit {}; the inode table holds {} descriptors, open files "
                     "and directories the rest); lookups and opens fail until some are closed "
                     "(logged once)",
                     what, std::strerror(-rv), descriptor_limit(), inodes_.descriptors());
    return rv;
}

void Filesystem::after_removal(const struct stat& removed) {
    inodes_.release_descriptor(removed.st_dev, removed.st_ino);
}

int Filesystem::reserve_window(const Credentials& who, Inode& inode, OpenFile& file,
                               uint64_t from, bool at_open) {
    if (!file.window)
        return 0;
    if (int error = inode.view.write_error())
        return error;
    AsCredentials as_writer(who);
    const int rv = file.direct->reserve_ahead(from, 2 * options_.writeback_window);
    // Where nothing can be reserved, a file is not let into the window at its open; one in it
    // already (a setuid bit set since) writes through at the kernel's writeback as it can.
    if (rv == -EOPNOTSUPP && !at_open) {
        inode.view.room_short(false);
        return 0;
    }
    inode.view.room_short(rv < 0);
    return rv;
}

void Filesystem::window_off(const std::string& why) const {
    spdlog::log(options_.writeback_given ? spdlog::level::warn : spdlog::level::info,
                "writeback: {}: every write() stays a request to the daemon", why);
}

bool Filesystem::superseded_around(Inode& inode) {
    if (!writeback() || inode.type != S_IFREG || inode.view.open())
        return false;
    PathFd path;
    struct stat st;
    if (inodes_.path_fd(inode, path) < 0 || sys::stat_path_fd(path.get(), &st) < 0 ||
        !inode.view.differs(st))
        return false;
    inode.view.supersede();
    spdlog::debug("inode {}:{}/{} changed around the mount: the kernel gets a new inode for it",
                  major(inode.dev), minor(inode.dev), inode.ino);
    return true;
}

int Filesystem::stat_shown(Inode& inode, const StatBacking& stat_backing, struct stat& st) const {
    const bool regular = options_.dbopt && inode.type == S_IFREG;
    const int rv = regular && streaming_ ? inode.io.stat_with_pending(stat_backing, st)
                                         : stat_backing(st);
    if (rv == 0 && regular)
        st.st_blksize = kChunk;
    return rv;
}

FileChange Filesystem::change(Inode& inode, const fuse_file_info* fi, bool leaves_pages) {
    BackingPages pages;
    if (options_.dbopt && inode.type == S_IFREG) {
        if (fi) {
            pages = BackingPages(open_file_of(fi).fd.get(), page_size_);
        } else if (leaves_pages) {
            int fd = open_inode(inode, O_RDONLY | O_NONBLOCK);
            if (fd >= 0)
                pages = BackingPages(UniqueFd(fd), page_size_);
        }
    }
    return FileChange(inode.io, std::move(pages), kernel_file(inode));
}

KernelFile Filesystem::kernel_file(Inode& inode) {
    return {[this, &inode] { invalidate_attributes(inode); }};
}

DiscoveredAlignment Filesystem::root_alignment() {
    return alignment_.discover(root_.fd->get(), root_.dev);
}

bool Filesystem::note_device(dev_t dev, const DiscoveredAlignment& found) {
    std::lock_guard lock(devices_mutex_);
    return devices_.try_emplace(dev, found).second;
}

std::vector<std::pair<dev_t, DiscoveredAlignment>> Filesystem::devices() {
    std::vector<std::pair<dev_t, DiscoveredAlignment>> all;
    {
        std::lock_guard lock(devices_mutex_);
        all.assign(devices_.begin(), devices_.end());
    }
    // The backing directory's first: what its files found, or what the directory itself says
    // before any was opened (whether O_DIRECT works is known only from a file).
    auto root = std::find_if(all.begin(), all.end(), [&](const auto& d) { return d.first == root_.dev; });
    if (root == all.end())
        all.insert(all.begin(), {root_.dev, root_alignment()});
    else
        std::rotate(all.begin(), root, root + 1);
    return all;
}

int Filesystem::open_direct(Inode& inode, int buffered_fd, int flags, int open_flags,
                            std::unique_ptr<DirectFile>& out) {
    DirectFile::Access access;
    access.reads = (open_flags & O_ACCMODE) != O_WRONLY;
    access.writes = (open_flags & O_ACCMODE) != O_RDONLY;
    access.synchronous = (open_flags & (O_SYNC | O_DSYNC | O_DIRECT)) != 0;
    auto mode_changed = kernel_file(inode).forget_attributes;
    std::string name = fmt::format("inode {}:{}/{}", major(inode.dev), minor(inode.dev), inode.ino);
    // O_CREAT, O_EXCL and O_TRUNC did their work in the first open.
    int fd = sys::open_via_proc(buffered_fd, (flags & ~(O_CREAT | O_EXCL | O_TRUNC)) | O_DIRECT);
    // open(2) refuses O_DIRECT with EINVAL, and only with it, where the filesystem cannot do
    // direct I/O. Anything else (no descriptor left, no memory) is a failure of this open, not
    // a property of the filesystem: serving the file buffered would fill the page cache.
    if (fd < 0 && fd != -EINVAL)
        return fd;
    if (fd >= 0) {
        UniqueFd direct_fd(fd);
        DiscoveredAlignment found = alignment_.discover(fd, inode.dev);
        if (found.alignment) {
            note_device(inode.dev, found);
            out = std::make_unique<DirectFile>(
                std::make_unique<PosixBackingIo>(std::move(direct_fd), buffered_fd, page_size_),
                *found.alignment, inode.io, streaming_.get(), access, std::move(name),
                mode_changed);
            return 0;
        }
    }
    if (note_device(inode.dev, {}))
        spdlog::warn("the filesystem of device {}:{} refuses direct I/O ({}): its files are "
                     "served buffered, dropping their pages behind themselves",
                     major(inode.dev), minor(inode.dev),
                     fd < 0 ? std::strerror(-fd) : "statx: no direct-I/O alignment");
    // Alignment 1, and neither read-ahead nor coalescing.
    out = std::make_unique<DirectFile>(std::make_unique<DroppingBackingIo>(buffered_fd, page_size_),
                                       DioAlignment{1, 1}, inode.io, nullptr, access,
                                       std::move(name), mode_changed);
    return 0;
}

void Filesystem::invalidate_attributes(Inode& inode) { invalidate_attributes(ino_of(inode)); }

void Filesystem::invalidate_attributes(fuse_ino_t ino) {
    // An offset below zero: the attributes only, no page, so the kernel takes no lock of the
    // inode and waits for nothing, and a request of it may be under way.
    if (session_)
        fuse_lowlevel_notify_inval_inode(session_, ino, -1, 0);
}

Filesystem& filesystem_of(fuse_req_t req) {
    return *static_cast<Filesystem*>(fuse_req_userdata(req));
}

OpenFile& open_file_of(const fuse_file_info* fi) { return *reinterpret_cast<OpenFile*>(fi->fh); }

}  // namespace diofs

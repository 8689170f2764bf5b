// Directories: opendir, readdir, readdirplus, releasedir and fsyncdir.

#include "diofs/caller_credentials.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

#include <dirent.h>

#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace diofs::ops {
namespace {

struct DirCloser {
    void operator()(DIR* dir) const noexcept { ::closedir(dir); }
};

// An open directory: a DIR stream over the backing directory and where the kernel is in it.
struct OpenDir {
    explicit OpenDir(DIR* dir) : stream(dir) {}

    // Guards everything below. Taken by readdir/readdirplus of this handle only; under it,
    // readdirplus takes InodeTable's lock (never the other way round). Released before the
    // reply is sent.
    std::mutex mutex;
    const std::unique_ptr<DIR, DirCloser> stream;
    off_t offset = 0;             // the position the kernel will ask for next
    dirent* pending = nullptr;    // read from the stream but not yet handed to the kernel
};

OpenDir& open_dir_of(const fuse_file_info* fi) { return *reinterpret_cast<OpenDir*>(fi->fh); }

bool is_dot_or_dotdot(const char* name) {
    return std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
}

void opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "opendir", [&] {
        auto& fs = filesystem_of(req);
        PathFd path_fd;
        int fd = fs.path_fd(fs.inode(ino), path_fd);
        if (fd == 0) {
            CallerCredentials as_caller(req);
            // Through /proc/self/fd, like open: openat(fd, ".") would also need search
            // permission, and a directory that may be read but not searched can be listed.
            fd = sys::open_via_proc(path_fd.get(), O_RDONLY | O_DIRECTORY);
        }
        if (fd < 0)
            return reply_status(req, fd);
        UniqueFd owned(fd);
        DIR* stream = ::fdopendir(owned.get());
        if (!stream)
            return reply_status(req, -errno);
        (void)owned.release();  // the stream owns it now
        reply_open(req, fi, std::make_unique<OpenDir>(stream));
    });
}

// Fills one reply buffer of at most `size` bytes from `offset` on. With `plus`, each entry
// comes with its attributes and a lookup reference, given back when it does not fit, or when
// the kernel did not take the reply (the caller was interrupted), as reply_entry does.
void read_directory(fuse_req_t req, size_t size, off_t offset,
                    fuse_file_info* fi, bool plus) {
    auto& fs = filesystem_of(req);
    OpenDir& dir = open_dir_of(fi);
    std::vector<char> buffer(size);
    std::vector<fuse_ino_t> references;  // handed to the kernel with the reply
    size_t used = 0;
    int error = 0;
    {
        CallerCredentials as_caller(req);
        std::lock_guard lock(dir.mutex);
        if (offset != dir.offset) {
            ::seekdir(dir.stream.get(), offset);
            dir.pending = nullptr;
            dir.offset = offset;
        }
        while (true) {
            if (!dir.pending) {
                errno = 0;
                dir.pending = ::readdir(dir.stream.get());
                if (!dir.pending) {
                    error = errno;  // 0 at the end of the directory
                    break;
                }
            }
            const dirent& d = *dir.pending;
            size_t room = size - used;
            size_t entry_size;
            if (plus) {
                fuse_entry_param e;
                std::memset(&e, 0, sizeof e);
                // An entry that cannot be looked up (removed meanwhile, or no search
                // permission) is still listed, without attributes: as `ls` sees it natively.
                // The stream's own descriptor is the directory's: no other is needed.
                if (is_dot_or_dotdot(d.d_name) ||
                    fs.lookup(::dirfd(dir.stream.get()), d.d_name, &e) < 0) {
                    e.attr.st_ino = d.d_ino;
                    e.attr.st_mode = static_cast<mode_t>(d.d_type) << 12;
                }
                entry_size = fuse_add_direntry_plus(req, buffer.data() + used, room, d.d_name, &e,
                                                    d.d_off);
                if (e.ino) {
                    if (entry_size > room)
                        fs.forget(e.ino, 1);
                    else
                        references.push_back(e.ino);
                }
            } else {
                struct stat st;
                std::memset(&st, 0, sizeof st);
                st.st_ino = d.d_ino;
                st.st_mode = static_cast<mode_t>(d.d_type) << 12;
                entry_size = fuse_add_direntry(req, buffer.data() + used, room, d.d_name, &st,
                                               d.d_off);
            }
            if (entry_size > room)
                break;  // kept in `pending` for the next call
            used += entry_size;
            dir.offset = d.d_off;
            dir.pending = nullptr;
        }
    }
    // An error after some entries were listed is reported by the next call, which starts
    // where this one ended.
    if (error != 0 && used == 0)
        return reply_status(req, -error);
    if (fs.reply_with_attributes(references,
                                 [&] { return fuse_reply_buf(req, buffer.data(), used); }) != 0)
        for (fuse_ino_t given : references)
            fs.forget(given, 1);
}

void readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t offset, fuse_file_info* fi) {
    guarded(req, "readdir", [&] { read_directory(req, size, offset, fi, false); });
}

void readdirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t offset, fuse_file_info* fi) {
    guarded(req, "readdirplus", [&] { read_directory(req, size, offset, fi, true); });
}

void releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
    guarded(req, "releasedir", [&] {
        filesystem_of(req).handles().close(fi->fh);
        reply_status(req, 0);
    });
}

void fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
    guarded(req, "fsyncdir", [&] {
        reply_status(req, sys::fsync(::dirfd(open_dir_of(fi).stream.get()), datasync != 0));
    });
}

}  // namespace

void add_directory_operations(fuse_lowlevel_ops& ops) {
    ops.opendir = opendir;
    ops.readdir = readdir;
    ops.readdirplus = readdirplus;
    ops.releasedir = releasedir;
    ops.fsyncdir = fsyncdir;
}

}  // namespace diofs::ops

// Regular files: open, create, read, write, flush, release, fsync, fallocate,
// copy_file_range and lseek. Without dbopt the backing descriptor is an ordinary buffered one;
// under dbopt, reads, writes and copies go through the file's DirectFile, and the kernel keeps
// at most a small window of pages of the FUSE file (kernel_pages.hpp), or none at all
// (FOPEN_DIRECT_IO: strict, cache_window=0, a backing filesystem without direct I/O).

#include "diofs/caller_credentials.hpp"
#include "diofs/counters.hpp"
#include "diofs/syscalls.hpp"
#include "handlers.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

namespace diofs::ops {
namespace {

// The flags of the backing descriptor. O_APPEND is dropped because the kernel already hands
// the daemon the right offset of each write, and pwrite() on an O_APPEND descriptor ignores
// its offset on Linux. O_DIRECT is the mount's policy to decide, not the caller's: an
// unaligned request from the kernel would fail with EINVAL on an O_DIRECT descriptor.
int backing_open_flags(int fuse_flags) { return fuse_flags & ~(O_APPEND | O_DIRECT | O_NOCTTY); }

// Whether an open of a regular file may go through the writeback window (docs/design.md):
// opened for writing. Whether it does is the inode's to say (KernelView::writer_opened).
bool in_window(Filesystem& fs, int fuse_flags) {
    return fs.writeback() && (fuse_flags & O_ACCMODE) != O_RDONLY;
}

// In the window the kernel reads the partial pages it writes into (fuse_write_begin) through
// whichever open file it has, an O_WRONLY one too: the file's direct descriptor, opened by the
// daemon, is read-write. Only the kernel reads through it (the VFS sends no READ for a file
// not opened for reading), so a caller who may write and not read reads nothing.
int readable(int flags) { return (flags & ~O_ACCMODE) | O_RDWR; }

// The OpenFile for a backing descriptor just opened; under dbopt with its direct side, and the
// kernel told to cache a window of it or nothing (FOPEN_DIRECT_IO). Every descriptor the file will need, the ones
// that report at close included, is taken here: out of descriptors, the open fails (-errno in
// `error`), never a later close.
// `window`: the open goes through the writeback window (its direct descriptor read-write).
std::unique_ptr<OpenFile> make_open_file(fuse_req_t req, Inode& inode, UniqueFd fd,
                                         fuse_file_info* fi, bool window, int& error) {
    auto& fs = filesystem_of(req);
    auto file = std::make_unique<OpenFile>(std::move(fd));
    error = file->fd_close.arm(file->fd.get());
    if (error == 0 && fs.options().dbopt && inode.type == S_IFREG) {
        const int flags = window ? readable(fi->flags) : fi->flags;
        error = fs.open_direct(inode, file->fd.get(), backing_open_flags(flags), flags,
                               file->direct);
        if (error == 0 && file->direct->is_direct())
            error = file->direct_close.arm(file->direct->direct_fd());
        const bool direct = error == 0 && file->direct->is_direct();
        if (window && direct) {
            file->counted_writer = true;
            file->window = inode.view.writer_opened(fi->flags & (O_SYNC | O_DSYNC | O_DIRECT));
            // Room for the window, reserved as the caller. Where there is none, the file
            // writes direct (ENOSPC from the write() whose bytes do not fit), unless other
            // writers have it in the window: then its write()s ask first and are told.
            // Its opener writes what the kernel writes back (which comes as root).
            file->writer = std::make_shared<const Credentials>(Credentials::of(req));
            if (file->window &&
                fs.reserve_window(*file->writer, inode, *file, inode.view.size(), true) < 0 &&
                inode.view.writer_to_direct())
                file->window = false;
        }
        // Every open file of a mount's inode alike (they share the kernel's one mapping of it).
        file->cached = fs.kernel_pages() && direct &&
                       ((fi->flags & O_ACCMODE) == O_RDONLY || file->window);
        fi->direct_io = !file->cached;
    }
    if (inode.type == S_IFREG) {  // counted from here on: the destructor uncounts
        file->view = &inode.view;
        inode.view.opened();
    }
    if (error < 0)
        return nullptr;
    return file;
}

// Opens the backing file of `inode` as the caller, with the kernel's flags. Returns the
// descriptor or -errno.
// `window` says whether the open goes through the writeback window.
int open_backing(fuse_req_t req, Inode& inode, const fuse_file_info* fi, bool& window) {
    // O_TRUNC cuts the file: what other descriptors hold back goes out first, and their
    // read-ahead is dropped, as for a truncate through setattr.
    auto& fs = filesystem_of(req);
    PathFd path_fd;
    if (int rv = fs.path_fd(inode, path_fd); rv < 0)
        return rv;
    window = inode.type == S_IFREG && in_window(fs, fi->flags);
    auto open = [&] {
        CallerCredentials as_caller(req);
        return fs.note_descriptors(sys::open_via_proc(path_fd.get(), backing_open_flags(fi->flags)),
                                   "an open");
    };
    // No open file yet (fi->fh is not set), and a cut to 0 leaves no page at an end of file.
    if (!(fi->flags & O_TRUNC))
        return open();
    int fd = fs.change(inode, nullptr, false).resize(open);
    // The kernel cuts its own size to 0 at such an open (fuse_finish_open, atomic_o_trunc).
    if (fd >= 0 && fs.writeback() && inode.type == S_IFREG)
        inode.view.cut();
    return fd;
}

void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "open", [&] {
        auto& fs = filesystem_of(req);
        Inode& inode = fs.inode(ino);
        if (fs.superseded_around(inode))
            return reply_status(req, -ESTALE);
        bool window = false;
        int fd = open_backing(req, inode, fi, window);
        if (fd < 0)
            return reply_status(req, fd);
        int error;
        auto file = make_open_file(req, inode, UniqueFd(fd), fi, window, error);
        if (!file)
            return reply_status(req, error);
        // Close-to-open: the file may have changed around the mount (on another node of a
        // shared filesystem) since the kernel cached its size. Its pages go at this open (no
        // FOPEN_KEEP_CACHE); its attributes are asked for again before a read past the old end
        // (and, in the window, before the first write(): ENOSPC when no room was reserved).
        fs.invalidate_attributes(inode);
        reply_open(req, fi, std::move(file));
    });
}

// create for a name that exists after all: made in the backing directory, around the mount,
// after the kernel looked it up. It is looked up and opened as lookup and open would, so
// that a mount made on it (this very mount, bind-mounted there) is refused, not entered. The
// kernel takes only a regular file from create: another kind of file is reported as existing
// (this kernel then looks the name up again and opens what it finds, as it would have).
// Returns the descriptor, with a lookup reference in `e`, or -errno.
int open_existing(fuse_req_t req, int dir_fd, const char* name, fuse_file_info* fi,
                  fuse_entry_param* e, bool& window) {
    auto& fs = filesystem_of(req);
    int rv;
    {
        CallerCredentials as_caller(req);
        rv = fs.lookup(dir_fd, name, e);
    }
    if (rv < 0)
        return rv;
    int fd = S_ISREG(e->attr.st_mode) ? open_backing(req, fs.inode(e->ino), fi, window) : -EEXIST;
    if (fd < 0)
        fs.forget(e->ino, 1);
    return fd;
}

void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
    guarded(req, "create", [&] {
        auto& fs = filesystem_of(req);
        PathFd dir;
        int fd = fs.path_fd(fs.inode(parent), dir);
        bool window = in_window(fs, fi->flags);
        if (fd == 0) {
            CallerCredentials as_caller(req);
            CallerUmask with_umask(req);
            // Always O_EXCL: an open that can only make a new file never crosses into a mount
            // made on an existing one (see Filesystem::lookup).
            fd = fs.note_descriptors(
                sys::openat(dir.get(), name,
                            backing_open_flags(fi->flags) | O_CREAT | O_EXCL | O_NOFOLLOW,
                            with_umask.apply(mode)),
                "a create");
        }
        fuse_entry_param e;
        const bool existing = fd == -EEXIST && !(fi->flags & O_EXCL);
        if (existing)
            fd = open_existing(req, dir.get(), name, fi, &e, window);
        if (fd < 0)
            return reply_status(req, fd);
        UniqueFd owned(fd);
        if (!existing) {
            if (int rv = fs.entry_for_open_file(fd, &e); rv < 0)
                return reply_status(req, rv);
        }
        int error;
        Inode& inode = fs.inode(e.ino);
        auto file = make_open_file(req, inode, std::move(owned), fi, window, error);
        if (!file) {
            fs.forget(e.ino, 1);
            return reply_status(req, error);
        }
        fi->fh = fs.handles().add(std::move(file));
        e.attr_timeout = fs.attr_timeout(inode);  // now that its writer is counted
        if (fs.reply_with_attributes({&e.ino, 1},
                                     [&] { return fuse_reply_create(req, &e, fi); }) != 0) {
            fs.handles().close(fi->fh);  // before the inode its DirectFile uses may go
            fs.forget(e.ino, 1);
        }
    });
}

// A change of `file` through the mount that ended at `end`, for the kernel's view of it
// (KernelView::wrote).
void wrote(KernelView& view, const OpenFile& file, uint64_t end) {
    view.wrote(end, [&](struct stat& st) { return sys::fstat(file.fd.get(), &st); });
}

// A request answered with `bytes`, for the stats.
void count_request(Counter& requests, Counter& total, size_t bytes) {
    requests.add();
    total.add(bytes);
}

// Who writes through `file` for `req`: kept in the file while the uid and gid stay the same.
std::shared_ptr<const Credentials> writer_of(fuse_req_t req, OpenFile& file) {
    if (file.window)
        return file.writer;  // its opener's (OpenFile::writer)
    if (!file.writer || !file.writer->same_ids(req))
        file.writer = std::make_shared<const Credentials>(Credentials::of(req));
    return file.writer;
}

// After a read of `file` for [offset, offset + length): what falls out of the file's window of
// the kernel's page cache is dropped. The ticket to wait for after the reply (0: none).
uint64_t served(fuse_req_t req, fuse_ino_t ino, OpenFile& file, off_t offset, size_t length) {
    if (!file.cached || length == 0)
        return 0;
    return filesystem_of(req).kernel_pages()->served(file.span, ino, static_cast<uint64_t>(offset),
                                                     static_cast<uint64_t>(offset) + length);
}

// At a close and at release: the kernel's pages of the file go; not while a file writes
// through the window (`releasing`: besides this one, at its release), whose dirty pages the
// kernel would write back one page at a time to drop them (fuse_launder_folio). The last
// writer's release drops them, after the kernel wrote them back at its close.
void drop_kernel_pages(fuse_req_t req, fuse_ino_t ino, const OpenFile& file, bool releasing) {
    if (!file.cached)
        return;
    if (file.view && file.view->writers() > (releasing && file.window ? 1 : 0))
        return;
    filesystem_of(req).kernel_pages()->drop_all(ino);
}

// After a WRITE of the writeback window: the whole pages it carried go (a partial page at
// either end stays, or the next write() into it would read it back first). Called after the
// reply: it touches the mount's KernelPages only, not the request.
void drop_written_pages(KernelPages& pages, size_t page, fuse_ino_t ino, uint64_t offset,
                        uint64_t length) {
    const uint64_t begin = (offset + page - 1) / page * page;
    const uint64_t end = (offset + length) / page * page;
    if (end > begin)
        pages.drop(ino, begin, end - begin);
}

void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, "read", [&] {
        OpenFile& file = open_file_of(fi);
        if (auto& direct = file.direct) {
            ReadView view;
            ssize_t n = direct->read(static_cast<uint64_t>(off), size, view);
            if (n < 0)
                return reply_status(req, static_cast<int>(n));
            count_request(counters().read_requests, counters().read_bytes, view.length);
            KernelPages* pages = filesystem_of(req).kernel_pages();
            const uint64_t ticket = served(req, ino, file, off, size);
            fuse_reply_buf(req, view.data, view.length);
            // After the reply, unlike anything else: it touches only the mount's KernelPages
            // (not the request, the file or the inode), and the request's pages must not stay
            // locked while this thread waits.
            if (ticket)
                pages->wait_for(ticket);
            return;
        }
        // Through the backing's page cache, into this thread's buffer (what fuse_reply_data
        // would do without splicing, which diofs does not ask for), so the bytes are counted.
        thread_local std::vector<char> bytes;
        bytes.resize(std::max(bytes.size(), size));
        fuse_bufvec in = FUSE_BUFVEC_INIT(size);
        in.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
        in.buf[0].fd = file.fd.get();
        in.buf[0].pos = off;
        fuse_bufvec out = FUSE_BUFVEC_INIT(size);
        out.buf[0].mem = bytes.data();
        ssize_t n = fuse_buf_copy(&out, &in, FUSE_BUF_NO_SPLICE);
        if (n < 0)
            return reply_status(req, static_cast<int>(n));
        counters().read_passthrough.add(static_cast<uint64_t>(n));
        count_request(counters().read_requests, counters().read_bytes, static_cast<size_t>(n));
        fuse_reply_buf(req, bytes.data(), static_cast<size_t>(n));
    });
}

// The request's bytes in one piece of memory: libfuse hands them so unless splicing, which
// diofs turns off; anything else is gathered into this thread's buffer.
const char* request_bytes(fuse_bufvec* in, size_t size) {
    if (in->count == 1 && !(in->buf[0].flags & FUSE_BUF_IS_FD))
        return static_cast<const char*>(in->buf[0].mem);
    thread_local std::vector<char> gathered;
    gathered.resize(size);
    fuse_bufvec out{};
    out.count = 1;
    out.buf[0].size = size;
    out.buf[0].mem = gathered.data();
    ssize_t n = fuse_buf_copy(&out, in, FUSE_BUF_NO_SPLICE);
    return n == static_cast<ssize_t>(size) ? gathered.data() : nullptr;
}

void write_buf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t off, fuse_file_info* fi) {
    guarded(req, "write", [&] {
        OpenFile& file = open_file_of(fi);
        if (auto& direct = file.direct) {
            const size_t size = fuse_buf_size(in);
            const char* bytes = request_bytes(in, size);
            if (!bytes)
                return reply_status(req, -EIO);
            // The kernel's writeback sends it through any open file that may write: such a
            // write is not held back (DirectFile::Hold), nor any other where the kernel keeps
            // sizes and times (KernelView: the backing file's time after it is recorded).
            auto& fs = filesystem_of(req);
            KernelView* view = fs.writeback() ? file.view : nullptr;
            const bool window = view && (file.window || view->writing());
            // As the caller, now or when a coalesced write goes out: the backing filesystem
            // charges the caller's quota and keeps root's reserved blocks from them.
            ssize_t n = direct->write(bytes, size, static_cast<uint64_t>(off), writer_of(req, file),
                                      view ? DirectFile::Hold::never : DirectFile::Hold::may);
            if (n < 0 && window) {
                // Acknowledged bytes lost: the writers' next write() is told (must_ask_again).
                wrote(*view, file, static_cast<uint64_t>(off) + size);
                view->write_failed(static_cast<int>(n));
                spdlog::error("{}: a write back of {} bytes at {} failed: {}; its writers are "
                              "told at their next write, fsync and close",
                              direct->name(), size, off, std::strerror(static_cast<int>(-n)));
                reply_status(req, static_cast<int>(n));
                return fs.invalidate_attributes(ino);
            }
            if (n < 0)
                return reply_status(req, static_cast<int>(n));
            count_request(counters().write_requests, counters().written_bytes, static_cast<size_t>(n));
            KernelPages* written_back = window ? fs.kernel_pages() : nullptr;
            // Room past this WRITE, before the writer dirties pages there: when there is none,
            // its next write() is told (the room reserved before holds what it has now).
            const bool short_of_room =
                file.window && fs.reserve_window(*file.writer, fs.inode(ino), file,
                                                 static_cast<uint64_t>(off) + size) < 0;
            const size_t page = fs.page_size();
            if (view)
                wrote(*view, file, static_cast<uint64_t>(off) + static_cast<uint64_t>(n));
            fuse_reply_write(req, static_cast<size_t>(n));
            if (short_of_room)
                fs.invalidate_attributes(ino);
            if (written_back)
                drop_written_pages(*written_back, page, ino, static_cast<uint64_t>(off),
                                   static_cast<uint64_t>(n));
            return;
        }
        fuse_bufvec out{};
        out.count = 1;
        out.buf[0].size = fuse_buf_size(in);
        out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
        out.buf[0].fd = file.fd.get();
        out.buf[0].pos = off;
        ssize_t n;
        {
            // As the caller: the backing filesystem clears setuid/setgid as it would for them.
            CallerCredentials as_caller(req);
            n = fuse_buf_copy(&out, in, FUSE_BUF_NO_SPLICE);
        }
        if (n < 0)
            return reply_status(req, static_cast<int>(n));
        counters().written_passthrough.add(static_cast<uint64_t>(n));
        count_request(counters().write_requests, counters().written_bytes, static_cast<size_t>(n));
        fuse_reply_write(req, static_cast<size_t>(n));
    });
}

// A failed write back of the file's window (KernelView::write_failed), for fsync and close.
int window_error(const OpenFile& file) { return file.window ? file.view->write_error() : 0; }

void flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "flush", [&] {
        // A close by a lock owner releases its POSIX locks on the file (record_locks.hpp).
        auto& fs = filesystem_of(req);
        if (fs.inode(ino).posix_locks.release_owner(fi->lock_owner))
            fs.lock_waiters().released(ino);
        OpenFile& file = open_file_of(fi);
        drop_kernel_pages(req, ino, file, false);
        int rv = file.direct ? file.direct->flush() : 0;
        const int closed = file.fd_close.flush(file.fd.get());
        const int direct_closed =
            file.direct && file.direct->is_direct() ? file.direct_close.flush(file.direct->direct_fd()) : 0;
        for (int report : {closed, direct_closed, window_error(file)})
            if (rv == 0)
                rv = report;
        reply_status(req, rv);
    });
}

void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, "release", [&] {
        // Pages a mapping read after the last close, too.
        drop_kernel_pages(req, ino, open_file_of(fi), true);
        auto& fs = filesystem_of(req);
        // The last close of the kernel's open file: its OFD locks go, and its flock() with
        // its backing descriptor.
        fs.inode(ino).posix_locks.release_file(fi->fh);
        fs.handles().close(fi->fh);
        fs.lock_waiters().released(ino);
        reply_status(req, 0);
    });
}

void fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
    guarded(req, "fsync", [&] {
        // Both descriptors: a writeback error is reported through the descriptor whose pages
        // failed (errseq per open file), and the bounce page writes through the buffered one.
        OpenFile& file = open_file_of(fi);
        int rv = file.direct ? file.direct->sync(datasync != 0) : 0;
        int synced = sys::fsync(file.fd.get(), datasync != 0);
        if (rv == 0)
            rv = window_error(file);
        reply_status(req, rv < 0 ? rv : synced);
    });
}

void fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info* fi) {
    guarded(req, "fallocate", [&] {
        auto& fs = filesystem_of(req);
        OpenFile& file = open_file_of(fi);
        int rv;
        {
            // Ends before the reply (guarded()). Zeroing and punching go through the page cache
            // at partial blocks: under dbopt those pages, and the ends of file, are dropped.
            FileChange change = fs.change(fs.inode(ino), fi, true);
            const Credentials caller = Credentials::of(req);  // read before the inode's lock
            const auto allocate = [&] {
                AsCredentials as_caller(caller);
                return sys::fallocate(file.fd.get(), mode, offset, length);
            };
            rv = change.resize_range(static_cast<uint64_t>(offset),
                                     static_cast<uint64_t>(length), allocate);
        }
        // The kernel extends its own size too (fuse_file_fallocate); the backing file's time
        // moves with any mode.
        if (rv == 0 && fs.writeback() && file.view)
            wrote(*file.view, file,
                  mode & FALLOC_FL_KEEP_SIZE
                      ? 0
                      : static_cast<uint64_t>(offset) + static_cast<uint64_t>(length));
        reply_status(req, rv);
    });
}

void copy_file_range(fuse_req_t req, fuse_ino_t, off_t off_in, fuse_file_info* fi_in, fuse_ino_t,
                     off_t off_out, fuse_file_info* fi_out, size_t len, int flags) {
    guarded(req, "copy_file_range", [&] {
        OpenFile& in = open_file_of(fi_in);
        OpenFile& out = open_file_of(fi_out);
        ssize_t n;
        if (in.direct && out.direct && flags == 0) {
            n = DirectFile::copy(*in.direct, static_cast<uint64_t>(off_in), *out.direct,
                                 static_cast<uint64_t>(off_out), len, writer_of(req, out));
        } else {
            CallerCredentials as_caller(req);
            n = sys::copy_file_range(in.fd.get(), &off_in, out.fd.get(), &off_out, len,
                                     static_cast<unsigned>(flags));
            if (n > 0) {
                counters().read_passthrough.add(static_cast<uint64_t>(n));
                counters().written_passthrough.add(static_cast<uint64_t>(n));
            }
        }
        if (n < 0)
            return reply_status(req, static_cast<int>(n));
        if (filesystem_of(req).writeback() && out.view)  // as the kernel's size of the target
            wrote(*out.view, out, static_cast<uint64_t>(off_out) + static_cast<uint64_t>(n));
        fuse_reply_write(req, static_cast<size_t>(n));
    });
}

void lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
    guarded(req, "lseek", [&] {
        // Under the writeback window the kernel's dirty pages are not in the backing file yet,
        // and it sends LSEEK without writing them back: ENOSYS makes it answer SEEK_DATA and
        // SEEK_HOLE itself from then on, with its own size (all of a file is data), as for
        // every filesystem without them. Asked for by no other request.
        if (filesystem_of(req).writeback())
            return reply_status(req, -ENOSYS);
        // SEEK_DATA and SEEK_HOLE see only what is on the backing file.
        filesystem_of(req).inode(ino).io.settle();
        off_t pos = sys::lseek(open_file_of(fi).fd.get(), off, whence);
        if (pos < 0)
            return reply_status(req, static_cast<int>(pos));
        fuse_reply_lseek(req, pos);
    });
}

}  // namespace

void add_file_operations(fuse_lowlevel_ops& ops) {
    ops.open = open;
    ops.create = create;
    ops.read = read;
    ops.write_buf = write_buf;
    ops.flush = flush;
    ops.release = release;
    ops.fsync = fsync;
    ops.fallocate = fallocate;
    ops.copy_file_range = copy_file_range;
    ops.lseek = lseek;
}

}  // namespace diofs::ops

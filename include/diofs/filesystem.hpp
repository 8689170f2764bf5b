#pragma once
// The state of one mount: its options, the root of the backing directory and the inode table.
// One Filesystem lives for the whole session; every request reaches it through
// fuse_req_userdata().

#include "diofs/caller_credentials.hpp"
#include "diofs/close_report.hpp"
#include "diofs/io/dio_alignment.hpp"
#include "diofs/io/direct_file.hpp"
#include "diofs/io/file_change.hpp"
#include "diofs/inode_table.hpp"
#include "diofs/io/kernel_pages.hpp"
#include "diofs/record_locks.hpp"
#include "diofs/open_handles.hpp"
#include "diofs/options.hpp"
#include "diofs/io/streaming.hpp"
#include "diofs/unique_fd.hpp"

#include <fuse_lowlevel.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <map>
#include <utility>
#include <vector>

namespace diofs {

// An open regular file: what a FUSE file handle (fi->fh) stands for.
struct OpenFile {
    explicit OpenFile(UniqueFd f) : fd(std::move(f)) {}
    ~OpenFile() {
        if (!view)
            return;
        view->closed();
        if (counted_writer)
            view->writer_closed(window);
    }
    OpenFile(const OpenFile&) = delete;
    OpenFile& operator=(const OpenFile&) = delete;
    const UniqueFd fd;                    // the buffered backing descriptor, always there
    // What the backing filesystem reports when `fd` and the direct descriptor are closed
    // (flush), prepared at open.
    CloseReport fd_close, direct_close;
    // Under dbopt: every read and write goes here. Declared after `fd`, so it goes first and
    // can still write out what it holds back (its bounce page writes through `fd`).
    std::unique_ptr<DirectFile> direct;
    // Under dbopt with the kernel's page cache (kernel_pages.hpp): what this file may have left
    // there; `cached` when the file is not FOPEN_DIRECT_IO.
    bool cached = false;
    // Writes go through the kernel's page cache (the writeback window): the kernel sends them
    // when it writes back, and the pages each WRITE carried are dropped after it.
    bool window = false;
    // Counted among its inode's writers (KernelView::writer_opened), in the window or not.
    bool counted_writer = false;
    KernelPages::Span span;
    // Its inode's KernelView, which counts it (a regular file).
    KernelView* view = nullptr;
    // Who writes through this file: learned from the first write request and kept while the
    // writers have the same uid and gid (supplementary groups cost a read of /proc each).
    std::shared_ptr<const Credentials> writer;
};

class Filesystem {
public:
    Filesystem(Options options, UniqueFd root_fd, const struct stat& root_st);

    const Options& options() const { return options_; }
    InodeTable& inodes() { return inodes_; }
    size_t page_size() const { return page_size_; }

    // The inode the kernel calls `ino`: FUSE_ROOT_ID is the backing directory itself, every
    // other number is the address of an entry of the inode table.
    Inode& inode(fuse_ino_t ino);

    // The device of the mount itself, learned once it is mounted and before the session loop
    // starts its threads (which only read it).
    void set_own_device(dev_t dev) { own_device_ = dev; }
    std::optional<dev_t> own_device() const { return own_device_; }

    // An O_PATH descriptor of `inode` in `out`, held open for as long as `out` (a request)
    // lives: 0, or -errno (-ESTALE for an inode deleted meanwhile). Call it as the daemon,
    // before switching to the caller's credentials: it may reopen the inode from its file
    // handle, which needs CAP_DAC_READ_SEARCH (inode_table.hpp).
    int path_fd(Inode& inode, PathFd& out);
    // Opens the backing file of `inode` with `flags` (through /proc/self/fd), with the
    // credentials of the calling thread: a descriptor, or -errno. Call it as the daemon.
    int open_inode(Inode& inode, int flags);

    // Looks `name` up in the directory `parent_fd` (a parent's path_fd, or an open descriptor
    // of it) without following a symlink and fills `e` for the kernel, taking one lookup
    // reference. Returns 0 or -errno: -EDEADLK for a name that leads back into this mount (see
    // refuse_own_mount).
    int lookup(int parent_fd, const char* name, fuse_entry_param* e);
    // The same for a file already opened (by create): no second resolution of its name.
    int entry_for_open_file(int fd, fuse_entry_param* e);
    // Returns `rv` (a descriptor or -errno) after logging, the first time only, that the
    // daemon ran out of descriptors when `rv` says so (EMFILE, ENFILE), with what it holds.
    int note_descriptors(int rv, const char* what);

    // Gives back `n` lookup references of `ino` (the root has none to give back).
    void forget(fuse_ino_t ino, uint64_t n);
    // After unlink, rmdir or a rename over `removed` (the attributes of the name removed,
    // taken just before): the daemon lets go of the descriptor it caches of that inode, so
    // that a file no one holds open is gone, its space free, when the removal is answered.
    void after_removal(const struct stat& removed);

    // Under dbopt, for a regular file: the direct side of the file just opened as `buffered_fd`
    // with `flags`, in `out`. The O_DIRECT descriptor is a reopen of it with the daemon's
    // credentials (the caller's right to open the file was checked by that first open; a file
    // created with mode 0444 must still be writable through the descriptor that created it).
    // A filesystem that refuses O_DIRECT (EINVAL) gets one warning and the dropping buffered
    // path. Any other failure of the reopen (EMFILE, ENFILE, ENOMEM...) is this open's: -errno.
    // `open_flags` are the caller's, as the kernel sent them (O_SYNC, O_DSYNC and O_DIRECT
    // turn read-ahead and coalescing off for this file).
    int open_direct(Inode& inode, int buffered_fd, int flags, int open_flags,
                    std::unique_ptr<DirectFile>& out);

    // The kernel forgets the attributes it holds of `inode` and asks again before it uses them
    // (a mode check, an exec, a read past the size it had): after a change it did not make
    // through a reply, such as a write clearing setuid bits, or one made around the mount
    // (close-to-open). Safe while a request of the inode is being served.
    void invalidate_attributes(Inode& inode);
    // The same by node id: after a reply that named the inode, which the kernel may have
    // forgotten since (a node id it no longer knows is ignored).
    void invalidate_attributes(fuse_ino_t ino);
    // Under the writeback window, while the room of a file's writers could not be reserved
    // (reserve_window failed): any reply that gives the kernel the file's attributes (GETATTR,
    // SETATTR, LOOKUP, CREATE, READDIRPLUS) makes it trust them again, and the writer's next
    // write() would not ask (GETATTR through its file) and be told ENOSPC. So they are
    // invalidated again after such a reply. Asked before the reply (the inode may be forgotten
    // after it).
    bool must_ask_again(const Inode& inode) const {
        return writeback() && inode.type == S_IFREG &&
               (inode.view.room_short() || inode.view.write_error() != 0);
    }
    // Sends a reply that hands the kernel the attributes of `inos` (`send`: a fuse_reply_*
    // call, 0 when the kernel took the reply), then invalidates those of the inodes whose
    // writers must ask again (must_ask_again, decided before the reply). Returns send's result:
    // when it is not 0 the caller gives back what the reply would have handed over.
    template <typename Send>
    int reply_with_attributes(std::span<const fuse_ino_t> inos, Send&& send) {
        if (!writeback())
            return send();
        std::vector<fuse_ino_t> again;
        for (const fuse_ino_t ino : inos)
            if (must_ask_again(inode(ino)))
                again.push_back(ino);
        const int rv = send();
        if (rv == 0)
            for (const fuse_ino_t ino : again)
                invalidate_attributes(ino);
        return rv;
    }
    // The session, once it exists (notifications go through it).
    void set_session(fuse_session* session) { session_ = session; }

    // The attributes the kernel is told of `inode`: the backing file's, read by `stat_backing`;
    // under dbopt regular files report kChunk (chunk.hpp), and a size and times that include
    // their pending coalesced writes (InodeIo::stat_with_pending says in which order, and why).
    using StatBacking = std::function<int(struct stat&)>;
    int stat_shown(Inode& inode, const StatBacking& stat_backing, struct stat& st) const;

    // The number the kernel knows `inode` by.
    fuse_ino_t ino_of(Inode& inode) {
        return &inode == &root_ ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(&inode);
    }

    // Read-ahead and coalescing of the mount; null when the mount is not dbopt or is strict.
    Streaming* streaming() { return streaming_.get(); }

    // The kernel's pages of the mount's files; null when it keeps none (not dbopt, strict, or
    // cache_window=0): then dbopt files are FOPEN_DIRECT_IO.
    KernelPages* kernel_pages() { return kernel_pages_.get(); }

    // The writeback window (docs/design.md): asked for (-o writeback) where the kernel's pages
    // are kept, possible once the mount's bdi holds the dirty pages to the window
    // (window_bounded, before INIT), and on once INIT has it from the kernel (start_writeback).
    bool wants_writeback() const {
        return kernel_pages_ && options_.writeback_window > 0 && window_bounded_.load();
    }
    void window_bounded() { window_bounded_.store(true); }
    // Logs why the window is not on (`why`, then "every write() stays a request"): a warning
    // when the mount options asked for it, a line of the log when it is the default.
    void window_off(const std::string& why) const;
    void start_writeback() {
        writeback_.store(true);
        inodes_.kernel_keeps_sizes();
    }
    bool writeback() const { return writeback_.load(std::memory_order_relaxed); }
    // The room of the writeback window for `file` (open in it; otherwise nothing to do): two
    // windows past `from`, reserved as `who`, so that what the kernel takes into its cache can
    // be written when it sends it. At the open and at every GETATTR through the file, from
    // what the kernel sent so far, as the caller: the kernel asks for one before a write()
    // after each page drop, and its error fails that write() with nothing taken; after each
    // WRITE of the file's writeback, from its end, as the file's opener: where that fails, the
    // writers' next write() asks (must_ask_again) and is told, while the room reserved before
    // still holds what the kernel has (docs/design.md). 0 or -errno (also the error of a failed
    // write back, KernelView::write_error).
    // At the open (`at_open`), -EOPNOTSUPP says that nothing can be reserved (no fallocate):
    // the file does not go into the window.
    int reserve_window(const Credentials& who, Inode& inode, OpenFile& file, uint64_t from,
                       bool at_open = false);
    // Under the writeback window: whether the kernel's inode of `inode` is to be replaced, as
    // the backing file changed around the mount while no open file of the mount had it
    // (KernelView). The request answers ESTALE then; the VFS looks the name up again
    // (LOOKUP_REVAL), and that lookup answers a new node id (InodeTable::acquire).
    bool superseded_around(Inode& inode);

    // The open files and directories the kernel holds (fi->fh), until their release or the end
    // of the session.
    OpenHandles& handles() { return handles_; }

    // Lock requests that wait for a lock held elsewhere (record_locks.hpp).
    LockWaiters& lock_waiters() { return lock_waiters_; }

    // The seam of the file's coherence (file_change.hpp) for a change of `inode` other than a
    // write of its data path (a truncate, fallocate, a chmod, chown or utimes) that a request
    // is about to make, through `fi`'s open file or, without one, through the inode. Under
    // dbopt, for a regular file, the drops of the backing file's pages after it go through
    // `fi`'s descriptor or, when the change `leaves_pages` (a truncate may leave the page of
    // an end of file; an open with O_TRUNC, which cuts to 0, leaves none), through one opened
    // now for the purpose, as the daemon: call it as the daemon.
    FileChange change(Inode& inode, const fuse_file_info* fi, bool leaves_pages);
    // What the kernel caches of `inode`, as a FileChange or a DirectFile reaches it.
    KernelFile kernel_file(Inode& inode);

    // The direct-I/O alignment of the backing directory, for the log at mount.
    DiscoveredAlignment root_alignment();
    // For the stats: each backing device a dbopt file was opened on, with what was found of
    // the first such file (no alignment: it refused O_DIRECT), the backing directory's first.
    std::vector<std::pair<dev_t, DiscoveredAlignment>> devices();

    // How long the kernel may trust names and attributes it was given (entry_timeout,
    // attr_timeout). Short, because other programs may change the backing directory behind
    // the mount's back.
    double entry_timeout() const { return options_.entry_timeout; }
    double attr_timeout() const { return options_.attr_timeout; }
    // The attribute timeout given for `inode`. While a writer of it is in the writeback window
    // the kernel refreshes them only when the daemon invalidates them (after each page drop,
    // KernelPages::drop), never because they expired: a GETATTR through an open file then
    // comes from a write() (the mode, which the kernel does not keep, is invalid) and never
    // from a read() past the end (the size it keeps; asked for only when the attributes
    // expired), so that an ENOSPC told at the reservation (reserve_window) fails the writer's
    // next write() and no read().
    double attr_timeout(const Inode& inode) const;

private:
    int fill_entry(UniqueFd path_fd, fuse_entry_param* e);
    // Tells the inode table how to reopen the inodes of device `dev` by handle, from
    // `path_fd`, a directory on it (see the definition).
    void learn_device(dev_t dev, int path_fd);
    // -EDEADLK when `path_fd` (what `name` resolved to) is on this very mount, else 0.
    int refuse_own_mount(int path_fd, const char* name);

    const Options options_;
    Inode root_;
    InodeTable inodes_;
    AlignmentDiscovery alignment_;
    const size_t page_size_;
    std::unique_ptr<Streaming> streaming_;
    fuse_session* session_ = nullptr;
    std::unique_ptr<KernelPages> kernel_pages_;  // after session_, which it uses
    // Notes `found` for `dev` (the first time); true the first time.
    bool note_device(dev_t dev, const DiscoveredAlignment& found);
    // Guards devices_: taken for a map lookup at each dbopt open.
    std::mutex devices_mutex_;
    std::map<dev_t, DiscoveredAlignment> devices_;
    // The mount's own device: set before the session loop starts, only read afterwards.
    std::optional<dev_t> own_device_;
    std::atomic<bool> window_bounded_ = false;
    std::atomic<bool> writeback_ = false;
    // Whether running out of descriptors was logged (only the first time is).
    std::atomic<bool> warned_descriptors_ = false;
    // Whether a lookup that leads back into the mount was logged (only the first one is).
    std::atomic<bool> warned_own_mount_ = false;
    // Last: destroyed first, while the inodes and the streaming its files use are still there.
    OpenHandles handles_;
    LockWaiters lock_waiters_;
};

Filesystem& filesystem_of(fuse_req_t req);
OpenFile& open_file_of(const fuse_file_info* fi);

}  // namespace diofs

#pragma once
// The command line: `diofs SOURCE MOUNTPOINT [-o OPT[,OPT...]] [-f] [-d]`, `--help`, `--version`.
// Parsing is pure (no file system access) so every error path has a unit test; each option
// parses and validates its own value, and every error is collected before the caller refuses
// to mount, so a person sees all of them at once.

#include <spdlog/common.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace diofs {

inline constexpr uint64_t kMiB = 1u << 20;
inline constexpr uint64_t kDefaultReadAhead = 4 * kMiB;
inline constexpr uint64_t kDefaultWriteBehind = 4 * kMiB;
inline constexpr uint64_t kDefaultCacheWindow = 1 * kMiB;
inline constexpr uint64_t kDefaultDboptMem = 32 * kMiB;
inline constexpr unsigned kDefaultIoThreads = 4;
inline constexpr double kDefaultCacheTimeout = 1.0;  // seconds
inline constexpr unsigned kDefaultMaxThreads = 0;  // one per CPU, at least 2 (daemon.cpp)
// The writeback window: on by default where the build's libfuse has what it needs
// (HANDLE_KILLPRIV_V2: 3.16+); a libfuse 3.14 build logs that it has none (daemon.cpp).
inline constexpr uint64_t kDefaultWriteback = 8 * kMiB;

// The longest fsname (the mount's source: fsname=, else SOURCE's absolute path) that mounts.
// mount(2) copies the source with strndup_user(source, PATH_MAX): 4095 bytes and the NUL; one
// byte more fails with a bare EINVAL from libfuse ("fuse: mount failed: Invalid argument").
inline constexpr size_t kMaxFsnameBytes = PATH_MAX - 1;

// "4M", "512K", "1G", "1048576": bytes (K, M, G are powers of 1024, either case); nothing when
// it is not a size.
std::optional<uint64_t> parse_size(std::string_view text);

struct Options {
    std::string source;
    std::string mountpoint;

    bool foreground = false;  // -f, or -d
    bool fuse_debug = false;  // -d or -o debug: libfuse prints every request
    bool show_help = false;
    bool show_version = false;

    // diofs's own options.
    bool dbopt = false;  // direct I/O for every regular file
    spdlog::level::level_enum log_level = spdlog::level::info;
    std::optional<uint32_t> dio_align;  // replaces the discovered direct-I/O alignment

    // Under dbopt (README, "When bytes reach the device"). strict: every write is on the
    // device when it returns and every read comes from it (no read-ahead, no coalescing).
    bool strict = false;
    uint64_t read_ahead = kDefaultReadAhead;    // window per open file; 0: none
    uint64_t write_behind = kDefaultWriteBehind;  // pending bytes per open file; 0: none
    // The pages of a mount's file the kernel may cache per open file (kernel_pages.hpp); 0: none,
    // the files are FOPEN_DIRECT_IO and every read() and write() is a request to the daemon.
    uint64_t cache_window = kDefaultCacheWindow;
    // The writeback window (docs/design.md): the kernel's page cache takes the writes of files
    // open for writing, and the mount's dirty and written pages are held to about this many
    // bytes (the bdi's max_bytes); 0: off, every write() is a request to the daemon.
    uint64_t writeback_window = kDefaultWriteback;
    // Whether the mount options set writeback=: a window asked for that cannot be had is a
    // warning; the default one, a line of the log.
    bool writeback_given = false;
    uint64_t dbopt_mem = kDefaultDboptMem;      // buffer memory of the whole mount
    unsigned io_threads = kDefaultIoThreads;    // threads doing read-ahead and writeouts

    // How long the kernel may trust what it was told of names (which inode a name is) and of
    // attributes (size, times, mode), in seconds. Other programs, or another node of a shared
    // filesystem, may change the backing directory behind the mount's back: 0 asks the daemon
    // every time (close-to-open also for names: a file replaced by a rename on another node is
    // the new file at the next open).
    double entry_timeout = kDefaultCacheTimeout;
    double attr_timeout = kDefaultCacheTimeout;

    // The FUSE request loop.
    // Worker threads at most; 0: the number of CPUs, at least 2 (see daemon.cpp).
    unsigned max_threads = kDefaultMaxThreads;
    bool clone_fd = false;                      // one /dev/fuse descriptor per worker
    // Requests over io_uring instead of read()/write() on /dev/fuse (libfuse 3.18 and a kernel
    // whose fuse module has enable_uring set): one ring per CPU, served by threads of libfuse's.
    bool io_uring = false;

    // Who may use the mount besides the user who mounted it. Unset means "decide from who
    // runs the daemon": a root daemon serves every user (permissions are still checked).
    std::optional<bool> allow_other;
    bool auto_unmount = false;
    std::optional<std::string> fsname;  // what /proc/mounts shows as the source

    // Generic mount flags (ro, nosuid, noatime, ...) handed to the kernel unchanged.
    std::vector<std::string> mount_flags;
    // mount(8)/fstab words that concern mount(8), not the filesystem (nofail, _netdev, x-*).
    std::vector<std::string> ignored;

    bool operator==(const Options&) const = default;
};

// Checks an option's value into Options; an error message, or nothing when the value is good.
using OptionSetter = std::function<std::optional<std::string>(Options&, std::string_view value)>;

// One accepted -o option, and the only place its name, default and one-line help are written:
// --help is made from these, and a unit test holds the README's options table and diofs.8's
// OPTIONS section to them, so the three cannot drift apart.
struct OptionSpec {
    std::string_view name;
    // What NAME=VALUE calls its value in the docs ("SIZE", "N"); empty: a flag, NAME alone.
    std::string_view value;
    // The default as the docs write it ("4M", "1", "off"). A value option's default, given as
    // NAME=DEFAULT, leaves Options as they are; one in words ("discovered") is not a value.
    std::string_view default_text;
    // One line. Empty for a generic mount flag (ro, nosuid, ...), which the docs group in one
    // row: those have no default of diofs's own.
    std::string_view help;
    OptionSetter set;

    bool takes_value() const { return !value.empty(); }
};

// Every accepted -o option: diofs's own, then the generic mount flags.
const std::vector<OptionSpec>& option_specs();

// Whether WORD is one of the fstab words mount(8) and systemd act on (nofail, _netdev, x-*,
// comment=...), which diofs accepts and ignores.
bool is_mount_only_word(std::string_view word);

struct ParseResult {
    Options options;
    std::vector<std::string> errors;  // empty when the command line is usable
};

ParseResult parse_command_line(const std::vector<std::string>& args);

// The text of --help: usage and one line per accepted option.
std::string usage_text();

// The accepted -o names as one line, for error messages ("accepted: dbopt, log_level=...").
std::string accepted_options_line();

// The arguments for fuse_session_new(): argv[0], then one -o with the kernel mount options
// diofs always sets (subtype, fsname, default_permissions) and the user's.
std::vector<std::string> fuse_arguments(const Options& options, bool daemon_is_root);

}  // namespace diofs

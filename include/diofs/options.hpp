#pragma once
// The command line: `diofs SOURCE MOUNTPOINT [-o OPT[,OPT...]] [-f] [-d]`, `--help`, `--version`.
// Parsing is pure (no file system access) so every error path has a unit test; each option
// parses and validates its own value, and every error is collected before the caller refuses
// to mount, so a person sees all of them at once.

#include <spdlog/common.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace diofs {

struct Options {
    std::string source;
    std::string mountpoint;

    bool foreground = false;  // -f, or -d
    bool fuse_debug = false;  // -d or -o debug: libfuse prints every request
    bool show_help = false;
    bool show_version = false;

    // diofs's own options.
    bool dbopt = false;  // direct I/O policy; parsed and accepted, the engine comes later
    spdlog::level::level_enum log_level = spdlog::level::info;
    std::optional<uint32_t> dio_align;  // replaces the discovered direct-I/O alignment

    // Who may use the mount besides the user who mounted it. Unset means "decide from who
    // runs the daemon": a root daemon serves every user (permissions are still checked).
    std::optional<bool> allow_other;
    bool auto_unmount = false;
    std::optional<std::string> fsname;  // what /proc/mounts shows as the source

    // Generic mount flags (ro, nosuid, noatime, ...) handed to the kernel unchanged.
    std::vector<std::string> mount_flags;
    // mount(8)/fstab words that concern mount(8), not the filesystem (nofail, _netdev, x-*).
    std::vector<std::string> ignored;
};

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

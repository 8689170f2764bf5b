#include "diofs/options.hpp"

#include "diofs/io/dio_alignment.hpp"

#include <fuse_lowlevel.h>  // FUSE_MINOR_VERSION

#include <algorithm>
#include <array>
#include <charconv>
#include <functional>
#include <string_view>

namespace diofs {
namespace {

using Setter = OptionSetter;

constexpr std::array<std::string_view, 7> kLogLevels = {"trace", "debug", "info", "warn",
                                                       "error", "critical", "off"};

Setter flag(bool Options::*member, bool value = true) {
    return [member, value](Options& o, std::string_view) -> std::optional<std::string> {
        o.*member = value;
        return std::nullopt;
    };
}

// A generic mount flag. It displaces its opposite ("rw" an earlier "ro"): mount(8) lets the
// last of such a pair win, and so does diofs, instead of refusing.
Setter mount_flag(std::string_view name, std::string_view opposite) {
    return [name, opposite](Options& o, std::string_view) -> std::optional<std::string> {
        std::erase_if(o.mount_flags,
                      [&](const std::string& f) { return f == name || f == opposite; });
        o.mount_flags.emplace_back(name);
        return std::nullopt;
    };
}

// "512K", "4M", "1G": `bytes` in the largest unit that divides it.
std::string size_text(uint64_t bytes) {
    if (bytes != 0 && bytes % (1024 * kMiB) == 0)
        return std::to_string(bytes / (1024 * kMiB)) + "G";
    if (bytes != 0 && bytes % kMiB == 0)
        return std::to_string(bytes / kMiB) + "M";
    return std::to_string(bytes / 1024) + "K";
}

// A size between `min` and `max` (or 0 when `zero_ok`), rounded up to a multiple of `unit`.
Setter size_option(uint64_t Options::*member, std::string_view name, uint64_t min, uint64_t max,
                   bool zero_ok, uint64_t unit = kMiB) {
    return [=](Options& o, std::string_view v) -> std::optional<std::string> {
        std::optional<uint64_t> size = parse_size(v);
        if (size && *size == 0 && zero_ok) {
            o.*member = 0;
            return std::nullopt;
        }
        if (!size || *size < min || *size > max)
            return std::string(name) + ": '" + std::string(v) + "' is not a size from " +
                   size_text(min) + " to " + size_text(max) + (zero_ok ? " or 0" : "") +
                   " (e.g. " + size_text(min) + ", " + size_text(4 * min) + ")";
        o.*member = (*size + unit - 1) / unit * unit;
        return std::nullopt;
    };
}

Setter count_option(unsigned Options::*member, std::string_view name, unsigned min, unsigned max) {
    return [=](Options& o, std::string_view v) -> std::optional<std::string> {
        unsigned value = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
        if (ec != std::errc() || end != v.data() + v.size() || value < min || value > max)
            return std::string(name) + ": '" + std::string(v) + "' is not a number from " +
                   std::to_string(min) + " to " + std::to_string(max);
        o.*member = value;
        return std::nullopt;
    };
}

// Seconds from 0 to `max`, a decimal fraction allowed ("0.5").
Setter seconds_option(double Options::*member, std::string_view name, double max) {
    return [=](Options& o, std::string_view v) -> std::optional<std::string> {
        double value = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value,
                                         std::chars_format::fixed);
        if (ec != std::errc() || end != v.data() + v.size() || !(value >= 0 && value <= max))
            return std::string(name) + ": '" + std::string(v) + "' is not a number of seconds " +
                   "from 0 to " + std::to_string(static_cast<int>(max));
        o.*member = value;
        return std::nullopt;
    };
}

}  // namespace

const std::vector<OptionSpec>& option_specs() {
    static const std::vector<OptionSpec> specs = [] {
        std::vector<OptionSpec> s = {
            {"dbopt", "", "off",
             "direct I/O for every regular file (the PolyServe DBOptimized policy)",
             flag(&Options::dbopt)},
            {"strict", "", "off",
             "dbopt without read-ahead and coalescing: every write on the device when it returns",
             flag(&Options::strict)},
            {"readahead", "SIZE", "4M",
             "dbopt: read-ahead window per open file, 1M to 1G in whole MiB; 0: none",
             size_option(&Options::read_ahead, "readahead", kMiB, 1024 * kMiB, true)},
            {"writebehind", "SIZE", "4M",
             "dbopt: coalesced bytes held per open file, 1M to 1G; 0: none",
             size_option(&Options::write_behind, "writebehind", kMiB, 1024 * kMiB, true)},
            {"cache_window", "SIZE", "1M",
             "dbopt: the kernel's page cache of a file open for reading, per open file, 1M to 64M; "
             "0: none",
             size_option(&Options::cache_window, "cache_window", kMiB, 64 * kMiB, true,
                         64 * 1024)},
            {"writeback", "SIZE", "8M",
             "dbopt: the kernel's page cache takes writes, held to SIZE for the mount, 1M to "
             "1G (libfuse 3.16+ builds); 0: off, every write() a request",
             [set = size_option(&Options::writeback_window, "writeback", kMiB, 1024 * kMiB, true)](
                 Options& o, std::string_view v) {
                 o.writeback_given = true;
                 return set(o, v);
             }},
            {"dbopt_mem", "SIZE", "32M",
             "dbopt: read-ahead and coalescing memory of the mount, 2M to 64G",
             size_option(&Options::dbopt_mem, "dbopt_mem", 2 * kMiB, 64 * 1024 * kMiB, false)},
            {"io_threads", "N", "4", "dbopt: threads doing read-ahead and writeouts, 1 to 64",
             count_option(&Options::io_threads, "io_threads", 1, 64)},
            {"dio_align", "N", "discovered",
             "direct-I/O alignment in bytes, a power of two from 512 to 1048576",
             [](Options& o, std::string_view v) -> std::optional<std::string> {
                 uint64_t value = 0;
                 auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
                 const char* why = nullptr;
                 if (ec != std::errc() || end != v.data() + v.size())
                     why = "is not a number";
                 else if (auto error = dio_align_option_error(value))
                     why = *error;
                 if (why)
                     return "dio_align: '" + std::string(v) + "' " + why +
                            " (accepted: 512, 1024, 2048, ... 1048576)";
                 o.dio_align = static_cast<uint32_t>(value);
                 return std::nullopt;
             }},
            {"entry_timeout", "SECONDS", "1",
             "how long the kernel may trust which file a name is, 0 to 3600; 0: close-to-open",
             seconds_option(&Options::entry_timeout, "entry_timeout", 3600)},
            {"attr_timeout", "SECONDS", "1",
             "how long the kernel may trust a file's attributes, 0 to 3600",
             seconds_option(&Options::attr_timeout, "attr_timeout", 3600)},
            {"max_threads", "N", "one per CPU, at least 2", "FUSE worker threads at most, 1 to 256",
             count_option(&Options::max_threads, "max_threads", 1, 256)},
            {"clone_fd", "", "off", "a /dev/fuse descriptor of its own for each worker thread",
             flag(&Options::clone_fd)},
            {"io_uring", "", "off",
             "requests over io_uring: a libfuse 3.18 build, the fuse module's enable_uring 1",
             [](Options& o, std::string_view) -> std::optional<std::string> {
#if FUSE_MINOR_VERSION >= 18
                 o.io_uring = true;
                 return std::nullopt;
#else
                 (void)o;
                 return "io_uring: this diofs is built with libfuse " +
                        std::to_string(FUSE_MAJOR_VERSION) + "." +
                        std::to_string(FUSE_MINOR_VERSION) +
                        ", which has no FUSE over io_uring (it came with 3.18; the README says "
                        "how to build against it)";
#endif
             }},
            {"log_level", "LEVEL", "info", "trace, debug, info, warn, error, critical or off",
             [](Options& o, std::string_view v) -> std::optional<std::string> {
                 auto it = std::find(kLogLevels.begin(), kLogLevels.end(), v);
                 if (it == kLogLevels.end())
                     return "log_level: '" + std::string(v) +
                            "' is not a level (accepted: trace, debug, info, warn, error, "
                            "critical, off)";
                 o.log_level = static_cast<spdlog::level::level_enum>(it - kLogLevels.begin());
                 return std::nullopt;
             }},
            {"allow_other", "", "on as root",
             "every user may use the mount, permissions still checked",
             [](Options& o, std::string_view) -> std::optional<std::string> {
                 o.allow_other = true;
                 return std::nullopt;
             }},
            {"noallow_other", "", "off", "only the user who mounted may use the mount",
             [](Options& o, std::string_view) -> std::optional<std::string> {
                 o.allow_other = false;
                 return std::nullopt;
             }},
            {"default_permissions", "", "on",
             "always on, accepted for compatibility: the kernel checks permissions",
             [](Options&, std::string_view) -> std::optional<std::string> { return std::nullopt; }},
            {"auto_unmount", "", "off", "unmount when the daemon dies (through fusermount3)",
             flag(&Options::auto_unmount)},
            {"fsname", "NAME", "SOURCE's absolute path",
             "the source shown in /proc/mounts, at most 4095 bytes",
             [](Options& o, std::string_view v) -> std::optional<std::string> {
                 if (v.empty() || v.find_first_of(", \t\n") != std::string_view::npos)
                     return "fsname: '" + std::string(v) +
                            "' must be non-empty, without commas or white space";
                 // Byte for byte what the kernel is given: fuse_arguments escapes only commas
                 // and backslashes, and libfuse takes the escapes off again.
                 if (v.size() > kMaxFsnameBytes)
                     return "fsname: '" + std::string(v.substr(0, 16)) + "...' is " +
                            std::to_string(v.size()) + " bytes, more than the " +
                            std::to_string(kMaxFsnameBytes) +
                            " the kernel takes as the source of a mount";
                 o.fsname = std::string(v);
                 return std::nullopt;
             }},
            {"debug", "", "off",
             "foreground, debug log and libfuse's trace of every request (as -d)",
             [](Options& o, std::string_view) -> std::optional<std::string> {
                 o.fuse_debug = o.foreground = true;
                 o.log_level = spdlog::level::debug;
                 return std::nullopt;
             }},
        };
        // Generic mount flags, passed to the kernel as they are, each with its opposite.
        constexpr std::pair<std::string_view, std::string_view> flags[] = {
            {"ro", "rw"},           {"suid", "nosuid"},         {"dev", "nodev"},
            {"exec", "noexec"},     {"sync", "async"},          {"relatime", "norelatime"},
            {"strictatime", "nostrictatime"}, {"lazytime", "nolazytime"},
            {"dirsync", ""},        {"noatime", ""},            {"nodiratime", ""}};
        for (auto [flag, opposite] : flags) {
            s.push_back({flag, "", "", "", mount_flag(flag, opposite)});
            if (!opposite.empty())
                s.push_back({opposite, "", "", "", mount_flag(opposite, flag)});
        }
        return s;
    }();
    return specs;
}

// The filesystem has nothing to do with these words, and mount helpers do not always strip
// them (mount.fuse3 keeps some).
bool is_mount_only_word(std::string_view word) {
    static constexpr std::array<std::string_view, 10> words = {
        "defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "nofail",
        "_netdev"};
    if (std::find(words.begin(), words.end(), word) != words.end())
        return true;
    return word.starts_with("x-") || word.starts_with("comment=");
}

namespace {

std::vector<std::string_view> split_commas(std::string_view list) {
    std::vector<std::string_view> out;
    size_t start = 0;
    while (start <= list.size()) {
        size_t comma = list.find(',', start);
        if (comma == std::string_view::npos)
            comma = list.size();
        out.push_back(list.substr(start, comma - start));
        start = comma + 1;
    }
    return out;
}

void parse_option(std::string_view word, Options& options, std::vector<std::string>& errors) {
    if (word.empty())
        return;  // "-o a,,b": tolerated, as mount(8) does
    if (is_mount_only_word(word)) {
        options.ignored.emplace_back(word);
        return;
    }
    size_t eq = word.find('=');
    std::string_view name = word.substr(0, eq);
    const auto& specs = option_specs();
    auto spec = std::find_if(specs.begin(), specs.end(),
                             [&](const OptionSpec& s) { return s.name == name; });
    if (spec == specs.end()) {
        errors.push_back("unknown option '" + std::string(word) + "' (accepted: " +
                         accepted_options_line() + ")");
        return;
    }
    if (spec->takes_value() && eq == std::string_view::npos) {
        errors.push_back("option '" + std::string(name) + "' needs a value: " +
                         std::string(name) + "=VALUE");
        return;
    }
    if (!spec->takes_value() && eq != std::string_view::npos) {
        errors.push_back("option '" + std::string(name) + "' takes no value (got '" +
                         std::string(word) + "')");
        return;
    }
    std::string_view value = eq == std::string_view::npos ? "" : word.substr(eq + 1);
    if (auto error = spec->set(options, value))
        errors.push_back(*error);
}

}  // namespace

std::optional<uint64_t> parse_size(std::string_view text) {
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end == text.data())
        return std::nullopt;
    std::string_view suffix(end, static_cast<size_t>(text.data() + text.size() - end));
    unsigned shift = 0;
    if (suffix == "K" || suffix == "k")
        shift = 10;
    else if (suffix == "M" || suffix == "m")
        shift = 20;
    else if (suffix == "G" || suffix == "g")
        shift = 30;
    else if (!suffix.empty())
        return std::nullopt;
    if (shift && value > (UINT64_MAX >> shift))
        return std::nullopt;
    return value << shift;
}

std::string accepted_options_line() {
    std::string line;
    for (const auto& spec : option_specs()) {
        if (!line.empty())
            line += ", ";
        line += spec.name;
        if (spec.takes_value())
            line += "=";
    }
    return line + ", and mount(8)'s own (defaults, nofail, _netdev, noauto, x-*...)";
}

std::string usage_text() {
    std::string text =
        "usage: diofs SOURCE MOUNTPOINT [-o OPT[,OPT...]] [-f] [-d]\n"
        "       diofs stats MOUNTPOINT [--json]\n"
        "       diofs --help | --version\n"
        "\n"
        "Mirror the directory SOURCE at MOUNTPOINT. With -o dbopt, regular files are read and\n"
        "written with direct I/O, so that copies and archives do not fill the page cache.\n"
        "`diofs stats` shows what a mount does (--json: as user.diofs.stats of its root has it).\n"
        "\n"
        "  -f             stay in the foreground, log to stderr (otherwise: daemon, syslog)\n"
        "  -d             foreground, debug log and libfuse's request trace\n"
        "  -o OPT,...     mount options:\n";
    for (const auto& spec : option_specs()) {
        if (spec.help.empty())
            continue;
        std::string name(spec.name);
        if (spec.takes_value())
            name += "=" + std::string(spec.value);
        name.resize(std::max<size_t>(name.size() + 1, 22), ' ');
        // A flag is off unless given: saying so on each line would only hide the others.
        std::string default_note =
            spec.default_text == "off" ? "" : " (default " + std::string(spec.default_text) + ")";
        text += "      " + name + std::string(spec.help) + default_note + "\n";
    }
    text +=
        "      ro, nosuid, nodev, noexec, noatime, sync, ... generic mount flags\n"
        "      (suid, dev: off unless given; mount(8), fstab: on unless nosuid/nodev)\n"
        "      defaults, nofail, _netdev, noauto, x-*, ...   for mount(8), ignored here\n"
        "  -h, --help     this text\n"
        "  -V, --version  the version\n"
        "\n"
        "When bytes reach the device under dbopt:\n"
        "  default   a write is held with the contiguous writes around it and written out with\n"
        "            O_DIRECT when its 1 MiB chunk is full (at once, by an I/O thread), or at the\n"
        "            latest on close (which waits for it), fsync, a write elsewhere in the file,\n"
        "            or a read, setattr, fallocate, lseek or copy of the file through the mount.\n"
        "            Room is reserved first: ENOSPC and EDQUOT come from the write that\n"
        "            does not fit. A failure found at a writeout (EIO) is returned by every\n"
        "            later write, fsync and the close of that open file.\n"
        "            Sequential reads are read ahead into the daemon's memory (never the backing\n"
        "            file's page cache); a write through the mount drops what was read ahead.\n"
        "            A file opened only for reading goes through the kernel's page cache, at\n"
        "            most cache_window of it per open file, dropped at close.\n"
        "  writeback=SIZE  (on by default, 8M, in a libfuse 3.16+ build; writeback=0: off)\n"
        "            a file opened for writing goes through the kernel's page cache, held\n"
        "            to about SIZE for the mount; its bytes go as above when the kernel writes\n"
        "            them back, at the latest on close or fsync. ENOSPC and EDQUOT still come\n"
        "            from a write (room is reserved ahead of the window).\n"
        "  strict    every write is on the device when it returns; every read comes from it.\n"
        "  O_SYNC, O_DSYNC, O_DIRECT files: as strict, whatever the mount options; beside a\n"
        "            writer of the same file in the window, each write() is written back\n"
        "            and fsynced before it returns.\n";
    return text;
}

ParseResult parse_command_line(const std::vector<std::string>& args) {
    ParseResult r;
    std::vector<std::string> positional;
    for (size_t i = 1; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a == "-h" || a == "--help") {
            r.options.show_help = true;
        } else if (a == "-V" || a == "--version") {
            r.options.show_version = true;
        } else if (a == "-f") {
            r.options.foreground = true;
        } else if (a == "-d") {
            parse_option("debug", r.options, r.errors);
        } else if (a == "-o") {
            if (i + 1 == args.size()) {
                r.errors.push_back("-o needs a list of options");
                break;
            }
            for (auto word : split_commas(args[++i]))
                parse_option(word, r.options, r.errors);
        } else if (a.starts_with("-o")) {
            for (auto word : split_commas(std::string_view(a).substr(2)))
                parse_option(word, r.options, r.errors);
        } else if (a.size() > 1 && a[0] == '-') {
            r.errors.push_back("unknown argument '" + a + "' (see diofs --help)");
        } else {
            positional.push_back(a);
        }
    }
    if (r.options.show_help || r.options.show_version)
        return r;
    if (positional.size() > 2)
        r.errors.push_back("too many arguments: '" + positional[2] +
                           "' (expected SOURCE MOUNTPOINT)");
    if (positional.empty())
        r.errors.push_back("missing SOURCE and MOUNTPOINT (usage: diofs SOURCE MOUNTPOINT)");
    else if (positional.size() == 1)
        r.errors.push_back("missing MOUNTPOINT (usage: diofs SOURCE MOUNTPOINT)");
    if (!positional.empty())
        r.options.source = positional[0];
    if (positional.size() > 1)
        r.options.mountpoint = positional[1];
    return r;
}

// libfuse splits -o at commas; a backslash keeps one (a SOURCE path may hold commas).
static std::string escape_option_value(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == ',' || c == '\\')
            out += '\\';
        out += c;
    }
    return out;
}

std::vector<std::string> fuse_arguments(const Options& options, bool daemon_is_root) {
    std::string o = "subtype=diofs,fsname=" +
                    escape_option_value(options.fsname.value_or(options.source)) +
                    ",default_permissions";
    if (options.allow_other.value_or(daemon_is_root))
        o += ",allow_other";
    if (options.auto_unmount)
        o += ",auto_unmount";
    if (options.io_uring)
        o += ",io_uring";  // libfuse's own option (3.18), taken by fuse_session_new
    for (const auto& f : options.mount_flags)
        o += "," + f;
    std::vector<std::string> args = {"diofs", "-o", o};
    if (options.fuse_debug)
        args.push_back("-d");
    return args;
}

}  // namespace diofs

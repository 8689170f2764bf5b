#include "diofs/stats.hpp"

#include "diofs/counters.hpp"
#include "diofs/filesystem.hpp"

#include <fuse_lowlevel.h>
#include <nlohmann/json.hpp>
#include <spdlog/fmt/fmt.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace diofs {
namespace {

// Keys in the order they were put in: the order a person reads them in.
using Json = nlohmann::ordered_json;

std::string device_name(dev_t dev) { return fmt::format("{}:{}", major(dev), minor(dev)); }

// `writeback`: whether the writeback window is on (Filesystem::writeback).
Json options_json(const Options& o, const KernelPages* pages, bool writeback) {
    Json j;
    j["dbopt"] = o.dbopt;
    j["strict"] = o.strict;
    j["read_ahead"] = o.read_ahead;
    j["write_behind"] = o.write_behind;
    j["cache_window"] = pages ? pages->window() : 0;
    j["kernel_read_ahead"] = pages ? pages->read_ahead() : 0;
    j["writeback"] = writeback ? o.writeback_window : 0;
    j["dbopt_mem"] = o.dbopt_mem;
    j["io_threads"] = o.io_threads;
    j["dio_align"] = o.dio_align ? Json(*o.dio_align) : Json(nullptr);
    j["entry_timeout"] = o.entry_timeout;
    j["attr_timeout"] = o.attr_timeout;
    j["max_threads"] = o.max_threads;
    j["clone_fd"] = o.clone_fd;
    j["io_uring"] = o.io_uring;
    j["log_level"] = spdlog::level::to_string_view(o.log_level).data();
    j["mount_flags"] = o.mount_flags;
    return j;
}

Json devices_json(Filesystem& fs) {
    Json all = Json::array();
    for (const auto& [dev, found] : fs.devices()) {
        Json d;
        d["device"] = device_name(dev);
        d["direct_io"] = found.alignment.has_value();
        d["alignment"] = found.alignment ? found.alignment->offset : 0;
        d["memory_alignment"] = found.alignment ? found.alignment->memory : 0;
        d["from"] = to_string(found.source);
        all.push_back(std::move(d));
    }
    return all;
}

// "12.0 MiB", "512 B".
std::string human_bytes(uint64_t bytes) {
    static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = static_cast<double>(bytes);
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < std::size(units)) {
        value /= 1024;
        ++unit;
    }
    return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

// A value of the stats that must be there: a missing one means the JSON is not diofs's.
const Json& at(const Json& j, const char* key) {
    if (!j.is_object() || !j.contains(key))
        throw std::invalid_argument(fmt::format("no \"{}\" in the stats", key));
    return j.at(key);
}
uint64_t number(const Json& j, const char* key) { return at(j, key).get<uint64_t>(); }

void flatten(const Json& j, const std::string& path, std::string& out) {
    if (j.is_structured()) {
        size_t i = 0;
        for (auto it = j.begin(); it != j.end(); ++it, ++i) {
            const std::string key = j.is_object() ? it.key() : std::to_string(i);
            flatten(*it, path.empty() ? key : path + "." + key, out);
        }
        return;
    }
    out += fmt::format("{}{}={}", out.empty() ? "" : " ", path,
                       j.is_string() ? j.get<std::string>() : j.dump());
}

}  // namespace

StatsView stats_view_for(uid_t uid) {
    return uid == 0 || uid == ::getuid() ? StatsView::full : StatsView::public_only;
}

std::string stats_json(Filesystem& fs, StatsView view) {
    const Counters& c = counters();
    const Options& o = fs.options();
    Json j;
    j["inodes"] = fs.inodes().size();
    j["open_dbopt_files"] = c.open_dbopt_files.get();
    j["read"] = {{"requests", c.read_requests.get()},
                 {"bytes", c.read_bytes.get()},
                 {"direct", c.read_direct.get()},
                 {"bounced", 0},
                 {"buffered_fallback", c.read_buffered_fallback.get()},
                 {"passthrough", c.read_passthrough.get()}};
    j["written"] = {{"requests", c.write_requests.get()},
                    {"bytes", c.written_bytes.get()},
                    {"direct", c.written_direct.get()},
                    {"bounced", c.written_bounced.get()},
                    {"buffered_fallback", c.written_buffered_fallback.get()},
                    {"passthrough", c.written_passthrough.get()}};
    j["read_ahead"] = {{"hits", c.read_ahead_hits.get()}, {"misses", c.read_ahead_misses.get()}};
    j["coalescing"] = {{"chunks_written", c.chunks_written.get()},
                       {"writeout_errors", c.writeout_errors.get()}};
    BufferPool::Counters pool;
    size_t limit = 0, chunk = 0;
    if (Streaming* streaming = fs.streaming()) {
        pool = streaming->pool.counters();
        limit = streaming->pool.limit();
        chunk = streaming->pool.chunk();
    }
    j["pool"] = {{"in_use", pool.in_use},
                 {"held", pool.allocated},
                 {"peak", pool.peak},
                 {"limit", limit},
                 {"chunk", chunk}};
    const KernelPages* pages = fs.kernel_pages();
    j["page_cache"] = {{"backing_drops", c.backing_drops.get()},
                       {"backing_drop_retries", c.backing_drop_retries.get()},
                       {"resident_after_drop", c.resident_after_drop.get()},
                       {"window_drops", pages ? pages->drops_made() : 0}};
    j["devices"] = o.dbopt ? devices_json(fs) : Json::array();
    j["options"] = options_json(o, pages, fs.writeback());
    const bool full = view == StatsView::full;
    j["mount"] = {{"source", full ? o.source : o.fsname.value_or(o.source)},
                  {"mountpoint", o.mountpoint},
                  {"pid", full ? Json(::getpid()) : Json(nullptr)},
                  {"version", DIOFS_VERSION},
                  {"libfuse", fmt::format("{}.{}", fuse_version() / 100, fuse_version() % 100)}};
    // Paths need not be UTF-8: their odd bytes are replaced, not refused.
    return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string stats_log_line(std::string_view json) {
    std::string out;
    flatten(Json::parse(json), "", out);
    return out;
}

std::string stats_table(std::string_view text) {
    Json j;
    try {
        j = Json::parse(text);
    } catch (const Json::exception& e) {
        throw std::invalid_argument(e.what());
    }
    try {
        const Json& mount = at(j, "mount");
        const Json& o = at(j, "options");
        // No PID for a reader who is neither root nor the mount's owner (StatsView).
        const Json& pid = at(mount, "pid");
        const std::string shown_pid =
            pid.is_null() ? "" : fmt::format(", pid {}", pid.get<uint64_t>());
        std::string out = fmt::format("diofs {} (libfuse {}){}: {} on {}\n",
                                      at(mount, "version").get<std::string>(),
                                      at(mount, "libfuse").get<std::string>(), shown_pid,
                                      at(mount, "source").get<std::string>(),
                                      at(mount, "mountpoint").get<std::string>());
        const bool dbopt = at(o, "dbopt").get<bool>();
        std::string options = dbopt ? (at(o, "strict").get<bool>() ? "dbopt, strict" : "dbopt")
                                    : "not dbopt";
        // Older daemons (the JSON is read by `diofs stats` of any version) have no window.
        const uint64_t window = o.contains("writeback") ? number(o, "writeback") : 0;
        if (dbopt && !at(o, "strict").get<bool>())
            options += fmt::format(", read_ahead {}, write_behind {}, cache_window {}, "
                                   "writeback {}, dbopt_mem {}, io_threads {}",
                                   human_bytes(number(o, "read_ahead")),
                                   human_bytes(number(o, "write_behind")),
                                   human_bytes(number(o, "cache_window")),
                                   window ? human_bytes(window) : std::string("off"),
                                   human_bytes(number(o, "dbopt_mem")), number(o, "io_threads"));
        options += fmt::format(", entry_timeout {} s, attr_timeout {} s",
                               at(o, "entry_timeout").dump(), at(o, "attr_timeout").dump());
        out += fmt::format("{:<20}{}\n", "options", options);
        for (const Json& d : at(j, "devices")) {
            const std::string how =
                at(d, "direct_io").get<bool>()
                    ? fmt::format("{} bytes (memory {}), from the {}", number(d, "alignment"),
                                  number(d, "memory_alignment"), at(d, "from").get<std::string>())
                    : std::string("no direct I/O: buffered, dropped behind");
            out += fmt::format("{:<20}{}: {}\n", "device", at(d, "device").get<std::string>(), how);
        }
        const Json& r = at(j, "read");
        const Json& w = at(j, "written");
        out += fmt::format("{:<20}{:>14}{:>14}\n", "", "read", "written");
        out += fmt::format("{:<20}{:>14}{:>14}\n", "requests", number(r, "requests"),
                           number(w, "requests"));
        for (auto [key, label] : {std::pair{"bytes", "bytes"},
                                  {"direct", "  direct"},
                                  {"bounced", "  bounced"},
                                  {"buffered_fallback", "  buffered fallback"},
                                  {"passthrough", "  passthrough"}})
            out += fmt::format("{:<20}{:>14}{:>14}\n", label, human_bytes(number(r, key)),
                               human_bytes(number(w, key)));
        const Json& ra = at(j, "read_ahead");
        out += fmt::format("{:<20}{} requests served from memory, {} missed\n", "read-ahead",
                           number(ra, "hits"), number(ra, "misses"));
        const Json& co = at(j, "coalescing");
        out += fmt::format("{:<20}{} chunks written out, {} write-out errors\n", "coalescing",
                           number(co, "chunks_written"), number(co, "writeout_errors"));
        const Json& p = at(j, "pool");
        out += fmt::format("{:<20}in use {}, held {}, peak {}, limit {}\n", "memory pool",
                           human_bytes(number(p, "in_use")), human_bytes(number(p, "held")),
                           human_bytes(number(p, "peak")), human_bytes(number(p, "limit")));
        out += fmt::format("{:<20}{} (inodes known: {})\n", "open dbopt files",
                           number(j, "open_dbopt_files"), number(j, "inodes"));
        const Json& pc = at(j, "page_cache");
        out += fmt::format("{:<20}{} drops of backing pages, {} retried, {} pages resident after "
                           "a drop; {} drops of the mount's window\n",
                           "page cache", number(pc, "backing_drops"),
                           number(pc, "backing_drop_retries"), number(pc, "resident_after_drop"),
                           number(pc, "window_drops"));
        return out;
    } catch (const Json::exception& e) {
        throw std::invalid_argument(e.what());
    }
}

int stats_command(const std::vector<std::string>& args) {
    bool json = false, usable = true;
    std::string mountpoint;
    for (const std::string& a : args) {
        if (a == "--json")
            json = true;
        else if (mountpoint.empty() && !a.empty() && a[0] != '-')
            mountpoint = a;
        else
            usable = false;
    }
    if (!usable || mountpoint.empty()) {
        std::fprintf(stderr, "usage: diofs stats MOUNTPOINT [--json]\n");
        return 2;
    }
    std::string value;
    for (;;) {
        ssize_t size = ::getxattr(mountpoint.c_str(), kStatsXattr, nullptr, 0);
        if (size >= 0) {
            value.resize(static_cast<size_t>(size));
            size = ::getxattr(mountpoint.c_str(), kStatsXattr, value.data(), value.size());
        }
        if (size >= 0) {
            value.resize(static_cast<size_t>(size));
            break;
        }
        if (errno == ERANGE)
            continue;  // grown between the two calls
        if (errno == ENODATA || errno == ENOTSUP)
            std::fprintf(stderr, "diofs stats: '%s' is not the root of a diofs mount (no %s)\n",
                         mountpoint.c_str(), kStatsXattr);
        else
            std::fprintf(stderr, "diofs stats: '%s': %s\n", mountpoint.c_str(),
                         std::strerror(errno));
        return 1;
    }
    if (json) {
        std::printf("%s\n", value.c_str());
        return 0;
    }
    try {
        std::fputs(stats_table(value).c_str(), stdout);
    } catch (const std::invalid_argument& e) {
        std::fprintf(stderr, "diofs stats: '%s': %s is not diofs's stats: %s\n",
                     mountpoint.c_str(), kStatsXattr, e.what());
        return 1;
    }
    return 0;
}

}  // namespace diofs

#pragma once
// What a mount does, for the people who run it: the options in force, the direct-I/O alignment
// of each backing device, and the counters (counters.hpp) with the mount's memory and page-cache
// figures. Three forms of the same data:
//   - JSON, the value of the extended attribute user.diofs.stats of the mount's root
//     (`getfattr -n user.diofs.stats --only-values MOUNTPOINT`; read-only, not listed);
//   - a table, printed by `diofs stats MOUNTPOINT` (`--json`: the JSON as it came);
//   - one log line of key=value pairs, on SIGUSR1 ("stats: inodes=12 read.bytes=...").
// docs/stats.md says what each figure means.

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

namespace diofs {

class Filesystem;

inline constexpr const char* kStatsXattr = "user.diofs.stats";

// Who reads the stats. Any user who may use the mount may read them (allow_other), but the
// mount's source as it was given, which fsname= hides from /proc/mounts, and the daemon's PID
// are the business of root and of the mount's owner (the user the daemon runs as) only:
//   - full: everything (root, the owner; SIGUSR1's log line);
//   - public_only: the source as /proc/mounts shows it (fsname= when given) and no PID.
enum class StatsView { full, public_only };

// The view of a caller whose filesystem uid is `uid`.
StatsView stats_view_for(uid_t uid);

// The mount's stats as one line of JSON.
std::string stats_json(Filesystem& fs, StatsView view = StatsView::full);

// The same as a log line: every value of `json` as path=value ("pool.in_use=0"), in order.
std::string stats_log_line(std::string_view json);

// The same as a table for a person. Throws std::invalid_argument when `json` is not the stats
// of a mount.
std::string stats_table(std::string_view json);

// `diofs stats MOUNTPOINT [--json]` (args without the program's name and "stats"): the exit
// status; messages go to stderr.
int stats_command(const std::vector<std::string>& args);

}  // namespace diofs

#pragma once

#include "diofs/options.hpp"

namespace diofs {

// Checks SOURCE and MOUNTPOINT, mounts, serves requests until unmounted or signalled
// (SIGINT, SIGTERM, SIGHUP), unmounts. Returns the process's exit status: 0 after a clean end,
// 1 when it could not mount (with one message naming the problem) or the session failed.
// SIGUSR1 logs the mount's stats (stats.hpp) as one line ("stats: inodes=N read.requests=...").
int run_daemon(const Options& options);

}  // namespace diofs

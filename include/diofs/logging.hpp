#pragma once
// Logging goes through spdlog's default logger: readable lines on stderr in the foreground,
// syslog (facility daemon, ident "diofs") once daemonized. libfuse's own messages are routed
// to the same logger. Debug is off by default; spdlog checks the level before it formats, so
// a debug line that is not printed costs a comparison.

#include <spdlog/common.h>

namespace diofs {

// `timestamps`: the foreground daemon's lines carry date and time; before a daemon detaches,
// its messages are for the person at the terminal: "diofs: error: ...".
void log_to_stderr(spdlog::level::level_enum level, bool timestamps);
void log_to_syslog(spdlog::level::level_enum level);

}  // namespace diofs

// diofs: a FUSE filesystem that mirrors a directory and, with -o dbopt, makes direct I/O the
// policy of the whole directory; `diofs stats MOUNTPOINT` shows what a mount does. main() only
// parses the command line; the rest is in the core library, where the tests can reach it.

#include "diofs/daemon.hpp"
#include "diofs/logging.hpp"
#include "diofs/options.hpp"
#include "diofs/stats.hpp"

#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>

#include <cstdio>

int main(int argc, char** argv) {
    std::vector<std::string> args(argv, argv + argc);
    if (args.size() >= 2 && args[1] == "stats")
        return diofs::stats_command({args.begin() + 2, args.end()});
    diofs::ParseResult parsed = diofs::parse_command_line(args);
    if (parsed.options.show_help) {
        std::fputs(diofs::usage_text().c_str(), stdout);
        return 0;
    }
    if (parsed.options.show_version) {
        std::printf("diofs %s (libfuse %d.%d)\n", DIOFS_VERSION, FUSE_MAJOR_VERSION,
                    FUSE_MINOR_VERSION);
        return 0;
    }
    diofs::log_to_stderr(parsed.options.log_level, parsed.options.foreground);
    if (!parsed.errors.empty()) {
        for (const auto& error : parsed.errors)
            spdlog::error("{}", error);
        return 1;
    }
    return diofs::run_daemon(parsed.options);
}

#include "diofs/logging.hpp"

#include <fuse_log.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

#include <cstdarg>
#include <cstdio>
#include <string>

namespace diofs {
namespace {

spdlog::level::level_enum from_fuse(fuse_log_level level) {
    switch (level) {
        case FUSE_LOG_EMERG:
        case FUSE_LOG_ALERT:
        case FUSE_LOG_CRIT: return spdlog::level::critical;
        case FUSE_LOG_ERR: return spdlog::level::err;
        case FUSE_LOG_WARNING: return spdlog::level::warn;
        case FUSE_LOG_NOTICE:
        case FUSE_LOG_INFO: return spdlog::level::info;
        case FUSE_LOG_DEBUG: return spdlog::level::debug;
    }
    return spdlog::level::info;
}

void from_libfuse(fuse_log_level level, const char* fmt, va_list ap) {
    auto spd_level = from_fuse(level);
    if (!spdlog::should_log(spd_level))
        return;
    char line[1024];
    std::vsnprintf(line, sizeof line, fmt, ap);
    std::string text(line);
    while (!text.empty() && text.back() == '\n')
        text.pop_back();
    spdlog::log(spd_level, "libfuse: {}", text);
}

void install(std::shared_ptr<spdlog::logger> logger, spdlog::level::level_enum level) {
    logger->set_level(level);
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(std::move(logger));
    fuse_set_log_func(from_libfuse);
}

}  // namespace

void log_to_stderr(spdlog::level::level_enum level, bool timestamps) {
    spdlog::drop("diofs");
    auto logger = spdlog::stderr_color_mt("diofs");
    logger->set_pattern(timestamps ? "%Y-%m-%d %H:%M:%S.%e diofs[%P] %^%l%$: %v"
                                   : "diofs: %^%l%$: %v");
    install(std::move(logger), level);
}

void log_to_syslog(spdlog::level::level_enum level) {
    spdlog::drop("diofs");
    auto logger = spdlog::syslog_logger_mt("diofs", "diofs", LOG_PID, LOG_DAEMON, false);
    logger->set_pattern("%v");
    install(std::move(logger), level);
}

}  // namespace diofs

// The three forms of a mount's stats (stats.hpp), from a Filesystem over a temporary directory
// (no mount): the JSON has every figure, the log line and the table say the same, and a value
// that is not diofs's stats is refused with a reason.

#include "temp_dir.hpp"

#include "diofs/counters.hpp"
#include "diofs/filesystem.hpp"
#include "diofs/stats.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace diofs {
namespace {

using Json = nlohmann::json;

class StatsTest : public ::testing::Test {
protected:

    std::string json_of(Options options, StatsView view = StatsView::full) {
        options.source = dir_;
        options.mountpoint = "/mnt/somewhere";
        int fd = ::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
        EXPECT_GE(fd, 0);
        struct stat st;
        EXPECT_EQ(::fstat(fd, &st), 0);
        Filesystem fs(options, UniqueFd(fd), st);
        return stats_json(fs, view);
    }

    TempDir tmp_{"stats"};
    const std::string dir_ = tmp_.path();
};

TEST_F(StatsTest, TheLogLineAndTheTableSayWhatTheJsonSays) {
    Options options;
    options.dbopt = true;
    counters().written_bounced.add(100);
    const std::string json = json_of(options);
    EXPECT_EQ(json.find('\n'), std::string::npos) << "one line";
    EXPECT_EQ(json.rfind("{\"inodes\":0,", 0), 0u) << json;

    const std::string line = stats_log_line(json);
    EXPECT_EQ(line.rfind("inodes=0 ", 0), 0u) << line;
    EXPECT_NE(line.find(" written.bounced=" + std::to_string(counters().written_bounced.get()) + " "),
              std::string::npos)
        << line;
    EXPECT_NE(line.find(" options.dbopt=true "), std::string::npos) << line;
    EXPECT_NE(line.find(" pool.limit=33554432 "), std::string::npos) << line;
    EXPECT_NE(line.find(" devices.0.direct_io="), std::string::npos) << line;
    EXPECT_NE(line.find(" mount.mountpoint=/mnt/somewhere "), std::string::npos) << line;

    const std::string table = stats_table(json);
    EXPECT_NE(table.find(" on /mnt/somewhere\n"), std::string::npos) << table;
    EXPECT_NE(table.find("options             dbopt, read_ahead 4.0 MiB"), std::string::npos)
        << table;
    EXPECT_NE(table.find("memory pool         in use 0 B, held 0 B, peak 0 B, limit 32.0 MiB"),
              std::string::npos)
        << table;
    EXPECT_NE(table.find("device              "), std::string::npos) << table;
}

// Root and the mount's owner see the backing path and the PID; anyone else the source as
// /proc/mounts shows it (fsname= when given) and no PID, in the JSON and in the table.
TEST_F(StatsTest, OnlyRootAndTheOwnerSeeTheBackingPathAndThePid) {
    EXPECT_EQ(stats_view_for(0), StatsView::full);
    EXPECT_EQ(stats_view_for(::getuid()), StatsView::full);
    EXPECT_EQ(stats_view_for(::getuid() + 1), StatsView::public_only);

    Options options;
    options.fsname = "archive";
    const Json full = Json::parse(json_of(options));
    EXPECT_EQ(full["mount"]["source"], dir_);
    EXPECT_EQ(full["mount"]["pid"], ::getpid());
    const Json shown = Json::parse(json_of(options, StatsView::public_only));
    EXPECT_EQ(shown["mount"]["source"], "archive");
    EXPECT_TRUE(shown["mount"]["pid"].is_null()) << shown["mount"];
    EXPECT_EQ(shown["mount"]["mountpoint"], "/mnt/somewhere");
    EXPECT_EQ(shown["written"], full["written"]) << "the figures are everybody's";
    const std::string table = stats_table(shown.dump());
    EXPECT_NE(table.find("): archive on /mnt/somewhere\n"), std::string::npos) << table;
    EXPECT_EQ(table.find(dir_), std::string::npos) << table;
    EXPECT_EQ(table.find("pid"), std::string::npos) << table;

    // Without fsname=, /proc/mounts shows SOURCE's absolute path to everybody anyway.
    const Json plain = Json::parse(json_of(Options{}, StatsView::public_only));
    EXPECT_EQ(plain["mount"]["source"], dir_);
    EXPECT_TRUE(plain["mount"]["pid"].is_null());
}

TEST_F(StatsTest, AMountWithoutDboptHasNoDevicesAndNoPool) {
    const std::string table = stats_table(json_of(Options{}));
    EXPECT_NE(table.find("options             not dbopt"), std::string::npos) << table;
    EXPECT_EQ(table.find("device "), std::string::npos) << table;
    EXPECT_NE(table.find("limit 0 B"), std::string::npos) << table;
}

TEST_F(StatsTest, AValueThatIsNotDiofsStatsIsRefused) {
    EXPECT_THROW(stats_table("not json"), std::invalid_argument);
    EXPECT_THROW(stats_table("{}"), std::invalid_argument);
    EXPECT_THROW(stats_table("[1, 2]"), std::invalid_argument);
    std::string json = json_of(Options{});
    json.replace(json.find("\"pool\""), 6, "\"loop\"");
    try {
        stats_table(json);
        ADD_FAILURE() << "accepted stats without a pool";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("\"pool\""), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace diofs

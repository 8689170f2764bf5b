#include "diofs/options.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace diofs {
namespace {

ParseResult parse(std::vector<std::string> args) {
    args.insert(args.begin(), "diofs");
    return parse_command_line(args);
}

bool any_error_mentions(const ParseResult& r, const std::string& text) {
    return std::any_of(r.errors.begin(), r.errors.end(),
                       [&](const std::string& e) { return e.find(text) != std::string::npos; });
}

TEST(Options, SourceAndMountpoint) {
    auto r = parse({"/srv/b", "/srv/m"});
    EXPECT_TRUE(r.errors.empty());
    EXPECT_EQ(r.options.source, "/srv/b");
    EXPECT_EQ(r.options.mountpoint, "/srv/m");
    EXPECT_FALSE(r.options.dbopt);
    EXPECT_FALSE(r.options.foreground);
    EXPECT_EQ(r.options.log_level, spdlog::level::info);
}

TEST(Options, OwnOptionsAndFlags) {
    auto r = parse({"-o", "dbopt,log_level=warn", "/b", "/m", "-f"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_TRUE(r.options.dbopt);
    EXPECT_EQ(r.options.log_level, spdlog::level::warn);
    EXPECT_TRUE(r.options.foreground);
    EXPECT_FALSE(r.options.fuse_debug);
}

TEST(Options, AttachedDashO) {
    auto r = parse({"/b", "/m", "-odbopt,noatime"});
    ASSERT_TRUE(r.errors.empty());
    EXPECT_TRUE(r.options.dbopt);
    EXPECT_EQ(r.options.mount_flags, std::vector<std::string>{"noatime"});
}

TEST(Options, RepeatedDashOAccumulates) {
    auto r = parse({"/b", "/m", "-o", "ro", "-o", "nosuid"});
    ASSERT_TRUE(r.errors.empty());
    EXPECT_EQ(r.options.mount_flags, (std::vector<std::string>{"ro", "nosuid"}));
}

TEST(Options, DebugMeansForegroundAndDebugLog) {
    for (auto flag : {std::vector<std::string>{"-d"}, std::vector<std::string>{"-o", "debug"}}) {
        flag.insert(flag.begin(), {"/b", "/m"});
        auto r = parse(flag);
        ASSERT_TRUE(r.errors.empty());
        EXPECT_TRUE(r.options.foreground);
        EXPECT_TRUE(r.options.fuse_debug);
        EXPECT_EQ(r.options.log_level, spdlog::level::debug);
    }
}

TEST(Options, EveryLogLevel) {
    const std::pair<const char*, spdlog::level::level_enum> levels[] = {
        {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
        {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
        {"error", spdlog::level::err},   {"critical", spdlog::level::critical},
        {"off", spdlog::level::off}};
    for (auto [name, level] : levels) {
        auto r = parse({"/b", "/m", "-o", std::string("log_level=") + name});
        ASSERT_TRUE(r.errors.empty()) << name;
        EXPECT_EQ(r.options.log_level, level) << name;
    }
}

TEST(Options, BadLogLevelNamesTheAcceptedOnes) {
    auto r = parse({"/b", "/m", "-o", "log_level=loud"});
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_TRUE(any_error_mentions(r, "log_level"));
    EXPECT_TRUE(any_error_mentions(r, "loud"));
    EXPECT_TRUE(any_error_mentions(r, "trace, debug, info"));
}

TEST(Options, UnknownOptionListsAccepted) {
    auto r = parse({"/b", "/m", "-o", "turbo"});
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_TRUE(any_error_mentions(r, "unknown option 'turbo'"));
    EXPECT_TRUE(any_error_mentions(r, "dbopt"));
    EXPECT_TRUE(any_error_mentions(r, "log_level="));
}

TEST(Options, FlagGivenAValue) {
    auto r = parse({"/b", "/m", "-o", "dbopt=1"});
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_TRUE(any_error_mentions(r, "'dbopt' takes no value"));
}

TEST(Options, ValueOptionWithoutValue) {
    auto r = parse({"/b", "/m", "-o", "log_level"});
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_TRUE(any_error_mentions(r, "'log_level' needs a value"));
}

TEST(Options, BadFsname) {
    EXPECT_TRUE(any_error_mentions(parse({"/b", "/m", "-o", "fsname="}), "fsname"));
    EXPECT_TRUE(parse({"/b", "/m", "-o", "fsname=archive"}).errors.empty());
}

TEST(Options, AllErrorsAreCollected) {
    auto r = parse({"-o", "turbo,log_level=loud,dbopt=2", "--frobnicate"});
    EXPECT_EQ(r.errors.size(), 5u);  // three options, one argument, missing SOURCE
    EXPECT_TRUE(any_error_mentions(r, "turbo"));
    EXPECT_TRUE(any_error_mentions(r, "loud"));
    EXPECT_TRUE(any_error_mentions(r, "dbopt"));
    EXPECT_TRUE(any_error_mentions(r, "--frobnicate"));
    EXPECT_TRUE(any_error_mentions(r, "missing SOURCE"));
}

TEST(Options, MissingArguments) {
    EXPECT_TRUE(any_error_mentions(parse({}), "missing SOURCE and MOUNTPOINT"));
    EXPECT_TRUE(any_error_mentions(parse({"/b"}), "missing MOUNTPOINT"));
    EXPECT_TRUE(any_error_mentions(parse({"/b", "/m", "/x"}), "too many arguments: '/x'"));
    EXPECT_TRUE(any_error_mentions(parse({"/b", "/m", "-o"}), "-o needs"));
}

TEST(Options, HelpAndVersionNeedNoArguments) {
    auto help = parse({"--help"});
    EXPECT_TRUE(help.errors.empty());
    EXPECT_TRUE(help.options.show_help);
    auto version = parse({"-V"});
    EXPECT_TRUE(version.errors.empty());
    EXPECT_TRUE(version.options.show_version);
    EXPECT_NE(usage_text().find("dbopt"), std::string::npos);
    EXPECT_NE(usage_text().find("log_level"), std::string::npos);
}

TEST(Options, MountOnlyWordsAreIgnored) {
    auto r = parse({"/b", "/m", "-o",
                    "defaults,nofail,_netdev,noauto,x-systemd.automount,comment=x,users,dbopt,"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_TRUE(r.options.dbopt);
    EXPECT_TRUE(r.options.mount_flags.empty());
    EXPECT_EQ(r.options.ignored.size(), 7u);
}

TEST(Options, LastOfAPairWins) {
    auto r = parse({"/b", "/m", "-o", "ro,noexec,rw"});
    ASSERT_TRUE(r.errors.empty());
    EXPECT_EQ(r.options.mount_flags, (std::vector<std::string>{"noexec", "rw"}));
}

TEST(Options, AllowOther) {
    EXPECT_FALSE(parse({"/b", "/m"}).options.allow_other.has_value());
    EXPECT_EQ(parse({"/b", "/m", "-o", "allow_other"}).options.allow_other, true);
    EXPECT_EQ(parse({"/b", "/m", "-o", "noallow_other"}).options.allow_other, false);
}

std::string fuse_o(const Options& o, bool root) {
    auto args = fuse_arguments(o, root);
    EXPECT_GE(args.size(), 3u);
    EXPECT_EQ(args[1], "-o");
    return args[2];
}

TEST(FuseArguments, AlwaysSubtypeFsnameAndPermissions) {
    auto o = parse({"/srv/b", "/srv/m"}).options;
    EXPECT_EQ(fuse_o(o, true), "subtype=diofs,fsname=/srv/b,default_permissions,allow_other");
    EXPECT_EQ(fuse_o(o, false), "subtype=diofs,fsname=/srv/b,default_permissions");
}

TEST(FuseArguments, UserChoicesAndEscaping) {
    auto o = parse({"/srv/a,b", "/m", "-o", "noallow_other,noatime,ro,auto_unmount", "-d"}).options;
    auto args = fuse_arguments(o, true);
    EXPECT_EQ(args[2], "subtype=diofs,fsname=/srv/a\\,b,default_permissions,auto_unmount,"
                       "noatime,ro");
    EXPECT_EQ(args.back(), "-d");
    o = parse({"/b", "/m", "-o", "fsname=archive"}).options;
    EXPECT_EQ(fuse_o(o, false), "subtype=diofs,fsname=archive,default_permissions");
}

}  // namespace
}  // namespace diofs

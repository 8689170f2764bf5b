#include "diofs/options.hpp"

#include <fuse_lowlevel.h>  // FUSE_MINOR_VERSION: what this build of diofs can do
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

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

// The kernel copies a mount's source with strndup_user(source, PATH_MAX): on 6.18 an fsname of
// 4095 bytes mounts, one of 4096 fails with EINVAL ("fuse: mount failed: Invalid argument").
TEST(Options, FsnameLongerThanTheKernelTakesIsRefusedByName) {
    EXPECT_EQ(kMaxFsnameBytes, 4095u);
    const std::string longest(kMaxFsnameBytes, 'n');
    auto r = parse({"/b", "/m", "-o", "fsname=" + longest});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.fsname, longest);
    // A backslash reaches the kernel as one byte (fuse_arguments escapes it for libfuse only).
    EXPECT_TRUE(parse({"/b", "/m", "-o", "fsname=" + longest.substr(1) + "\\"}).errors.empty());

    r = parse({"/b", "/m", "-o", "fsname=" + longest + "n,log_level=loud"});
    ASSERT_EQ(r.errors.size(), 2u) << "reported with the other errors";
    EXPECT_TRUE(any_error_mentions(r, "fsname:"));
    EXPECT_TRUE(any_error_mentions(r, "4096 bytes"));
    EXPECT_TRUE(any_error_mentions(r, "4095"));
    EXPECT_TRUE(any_error_mentions(r, "log_level"));
    for (const auto& e : r.errors)
        EXPECT_LT(e.size(), 200u) << "the message quotes the whole name: " << e;
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

TEST(ParseSize, PlainNumbersAndBinarySuffixes) {
    EXPECT_EQ(parse_size("0"), 0u);
    EXPECT_EQ(parse_size("1048576"), 1048576u);
    EXPECT_EQ(parse_size("512K"), 512u << 10);
    EXPECT_EQ(parse_size("512k"), 512u << 10);
    EXPECT_EQ(parse_size("4M"), 4u << 20);
    EXPECT_EQ(parse_size("4m"), 4u << 20);
    EXPECT_EQ(parse_size("1G"), 1u << 30);
    EXPECT_EQ(parse_size("3g"), 3ull << 30);
    EXPECT_EQ(parse_size("0M"), 0u);
    EXPECT_EQ(parse_size("18446744073709551615"), UINT64_MAX);
    EXPECT_EQ(parse_size("17179869183G"), 17179869183ull << 30);
}

TEST(ParseSize, AnythingElseIsNotASize) {
    for (const char* bad : {"", "M", "K", "-1", "-4M", "+4M", " 4M", "4M ", "4 M", "4MB", "4MiB",
                            "4T", "4.5M", "0x10", "abc", "4MM", "18446744073709551616",
                            "17179869184G", "99999999999999999999K"}) {
        EXPECT_FALSE(parse_size(bad).has_value()) << "'" << bad << "' was taken for "
                                                  << parse_size(bad).value_or(0);
    }
}

TEST(Options, StreamingDefaults) {
    auto r = parse({"-o", "dbopt", "/b", "/m"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_FALSE(r.options.strict);
    EXPECT_EQ(r.options.read_ahead, 4u << 20);
    EXPECT_EQ(r.options.write_behind, 4u << 20);
    EXPECT_EQ(r.options.dbopt_mem, 32u << 20);
    EXPECT_EQ(r.options.io_threads, 4u);
    EXPECT_EQ(r.options.max_threads, 0u) << "0: as many as the machine has CPUs (at least 2)";
    EXPECT_FALSE(r.options.clone_fd);
    EXPECT_EQ(r.options.read_ahead, kDefaultReadAhead);
    EXPECT_EQ(r.options.write_behind, kDefaultWriteBehind);
    EXPECT_EQ(r.options.dbopt_mem, kDefaultDboptMem);
    EXPECT_EQ(r.options.io_threads, kDefaultIoThreads);
    EXPECT_EQ(r.options.max_threads, kDefaultMaxThreads);
}

TEST(Options, StreamingOptionsAreParsed) {
    auto r = parse({"-o",
                    "dbopt,strict,readahead=8M,writebehind=16m,dbopt_mem=1G,io_threads=8,"
                    "max_threads=32,clone_fd",
                    "/b", "/m"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_TRUE(r.options.dbopt);
    EXPECT_TRUE(r.options.strict);
    EXPECT_EQ(r.options.read_ahead, 8u << 20);
    EXPECT_EQ(r.options.write_behind, 16u << 20);
    EXPECT_EQ(r.options.dbopt_mem, 1u << 30);
    EXPECT_EQ(r.options.io_threads, 8u);
    EXPECT_EQ(r.options.max_threads, 32u);
    EXPECT_TRUE(r.options.clone_fd);
    // None of them is the kernel's business.
    EXPECT_EQ(fuse_arguments(r.options, false)[2], "subtype=diofs,fsname=/b,default_permissions");
}

TEST(Options, ZeroTurnsReadAheadAndCoalescingOff) {
    auto r = parse({"-o", "dbopt,readahead=0,writebehind=0", "/b", "/m"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.read_ahead, 0u);
    EXPECT_EQ(r.options.write_behind, 0u);
    EXPECT_FALSE(r.options.strict);
}

TEST(Options, SizesAreRoundedUpToWholeMiB) {
    auto r = parse({"-o", "readahead=1536K,writebehind=1048577,dbopt_mem=3000000", "/b", "/m"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.read_ahead, 2u << 20);
    EXPECT_EQ(r.options.write_behind, 2u << 20);
    EXPECT_EQ(r.options.dbopt_mem, 3u << 20);
    // The limits themselves are accepted.
    r = parse({"-o", "readahead=1M,writebehind=1G,dbopt_mem=2M,io_threads=1,max_threads=256",
               "/b", "/m"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.read_ahead, 1u << 20);
    EXPECT_EQ(r.options.write_behind, 1u << 30);
    EXPECT_EQ(r.options.dbopt_mem, 2u << 20);
    EXPECT_EQ(r.options.io_threads, 1u);
    EXPECT_EQ(r.options.max_threads, 256u);
    r = parse({"-o", "io_threads=64,dbopt_mem=64G", "/b", "/m"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.io_threads, 64u);
    EXPECT_EQ(r.options.dbopt_mem, 64ull << 30);
}

TEST(Options, CacheWindowIsASizeFrom1MTo64MOr0) {
    auto r = parse({"/b", "/m", "-o", "dbopt"});
    EXPECT_EQ(r.options.cache_window, 1u << 20) << "the default";
    r = parse({"/b", "/m", "-o", "dbopt,cache_window=0"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.cache_window, 0u);
    // Rounded up to 64 KiB.
    r = parse({"/b", "/m", "-o", "dbopt,cache_window=1100K"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.cache_window, 1152u << 10);
    r = parse({"/b", "/m", "-o", "dbopt,cache_window=64M"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.cache_window, 64u << 20);
    for (const char* word : {"cache_window=512K", "cache_window=65M", "cache_window=big"}) {
        r = parse({"/b", "/m", "-o", std::string("dbopt,") + word});
        ASSERT_EQ(r.errors.size(), 1u) << word << " was accepted";
        EXPECT_TRUE(any_error_mentions(r, "cache_window")) << word << ": " << r.errors.front();
        EXPECT_TRUE(any_error_mentions(r, "1M to 64M or 0")) << word << ": " << r.errors.front();
    }
}

TEST(Options, WritebackIsOffOrASizeFrom1MTo1G) {
    auto r = parse({"/b", "/m", "-o", "dbopt"});
    EXPECT_EQ(r.options.writeback_window, kDefaultWriteback)
        << "on by default where the build's libfuse can have it";
    EXPECT_FALSE(r.options.writeback_given);
    r = parse({"/b", "/m", "-o", "dbopt,writeback=4M"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.writeback_window, 4u << 20);
    EXPECT_TRUE(r.options.writeback_given);
    r = parse({"/b", "/m", "-o", "dbopt,writeback=0"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.writeback_window, 0u);
    for (const char* word : {"writeback=512K", "writeback=2G", "writeback=yes"}) {
        r = parse({"/b", "/m", "-o", std::string("dbopt,") + word});
        ASSERT_EQ(r.errors.size(), 1u) << word << " was accepted";
        EXPECT_TRUE(any_error_mentions(r, "writeback")) << word << ": " << r.errors.front();
    }
}

TEST(Options, EntryAndAttrTimeoutsAreSecondsFrom0To3600) {
    auto r = parse({"/b", "/m"});
    EXPECT_EQ(r.options.entry_timeout, 1.0) << "the default";
    EXPECT_EQ(r.options.attr_timeout, 1.0) << "the default";
    r = parse({"/b", "/m", "-o", "entry_timeout=0,attr_timeout=0.25"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.entry_timeout, 0.0);
    EXPECT_EQ(r.options.attr_timeout, 0.25);
    r = parse({"/b", "/m", "-o", "attr_timeout=3600"});
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_EQ(r.options.attr_timeout, 3600.0);
    for (const char* word : {"entry_timeout=-1", "entry_timeout=3601", "entry_timeout=1s",
                             "entry_timeout=", "attr_timeout=nan", "attr_timeout=1e3"}) {
        r = parse({"/b", "/m", "-o", word});
        ASSERT_EQ(r.errors.size(), 1u) << word << " was accepted";
        EXPECT_TRUE(any_error_mentions(r, std::string(word).substr(0, std::string(word).find('='))))
            << word << ": " << r.errors.front();
        EXPECT_TRUE(any_error_mentions(r, "seconds from 0 to 3600")) << word << ": " << r.errors.front();
    }
}

TEST(Options, BadStreamingValuesAreRefusedByName) {
    const std::pair<const char*, const char*> cases[] = {
        {"readahead=abc", "readahead"},       {"readahead=-1", "readahead"},
        {"readahead=4MB", "readahead"},       {"readahead=2G", "readahead"},
        {"readahead=1025M", "readahead"},     {"readahead=512K", "readahead"},
        {"readahead=99999999999G", "readahead"}, {"readahead=", "readahead"},
        {"writebehind=x", "writebehind"},     {"writebehind=4T", "writebehind"},
        {"writebehind=2049M", "writebehind"}, {"dbopt_mem=0", "dbopt_mem"},
        {"dbopt_mem=1M", "dbopt_mem"},        {"dbopt_mem=65G", "dbopt_mem"},
        {"dbopt_mem=lots", "dbopt_mem"},      {"io_threads=0", "io_threads"},
        {"io_threads=65", "io_threads"},      {"io_threads=4x", "io_threads"},
        {"io_threads=-2", "io_threads"},      {"io_threads=", "io_threads"},
        {"io_threads=1.5", "io_threads"},     {"max_threads=0", "max_threads"},
        {"max_threads=257", "max_threads"},   {"max_threads=ten", "max_threads"},
        {"max_threads=99999999999", "max_threads"},
    };
    for (auto [word, name] : cases) {
        auto r = parse({"/b", "/m", "-o", std::string("dbopt,") + word});
        ASSERT_EQ(r.errors.size(), 1u) << word << " was accepted";
        EXPECT_TRUE(any_error_mentions(r, name)) << word << ": " << r.errors.front();
        const std::string value = std::string(word).substr(std::string(word).find('=') + 1);
        EXPECT_TRUE(any_error_mentions(r, "'" + value + "'")) << word << ": " << r.errors.front();
    }
}

TEST(Options, StreamingOptionsNeedOrRefuseValues) {
    for (const char* name : {"readahead", "writebehind", "dbopt_mem", "io_threads", "max_threads"}) {
        auto r = parse({"/b", "/m", "-o", name});
        ASSERT_EQ(r.errors.size(), 1u) << name;
        EXPECT_TRUE(any_error_mentions(r, std::string("'") + name + "' needs a value")) << name;
    }
    for (const char* word : {"strict=1", "clone_fd=yes"}) {
        auto r = parse({"/b", "/m", "-o", word});
        ASSERT_EQ(r.errors.size(), 1u) << word;
        EXPECT_TRUE(any_error_mentions(r, "takes no value")) << word;
    }
}

TEST(Options, StreamingErrorsAreCollectedTogether) {
    auto r = parse({"/b", "/m", "-o",
                    "dbopt,readahead=x,writebehind=y,dbopt_mem=0,io_threads=0,max_threads=0"});
    EXPECT_EQ(r.errors.size(), 5u);
    for (const char* name : {"readahead", "writebehind", "dbopt_mem", "io_threads", "max_threads"})
        EXPECT_TRUE(any_error_mentions(r, name)) << name;
}

TEST(Options, StreamingOptionsAreListedInHelp) {
    const std::string help = usage_text();
    const std::string accepted = accepted_options_line();
    for (const char* name :
         {"strict", "readahead", "writebehind", "dbopt_mem", "io_threads", "max_threads", "clone_fd"}) {
        EXPECT_NE(help.find(name), std::string::npos) << name << " missing from --help";
        EXPECT_NE(accepted.find(name), std::string::npos) << name << " missing from the accepted list";
    }
}

// The options are written down three times: --help (made from option_specs()), the README's
// options table and diofs.8's OPTIONS section. These tests hold the two documents to
// option_specs(), so an option added, renamed or given another default in one place only
// fails here, naming the place.

// One option, or a group of words, as a document lists it: "readahead=SIZE", "-d", "ro",
// "x-*", and what the document says of its default.
struct DocEntry {
    std::vector<std::string> words;
    std::string default_text;  // the README's default cell; diofs.8's whole paragraph
    std::string where;         // "README.md:361"
};

std::string source_file(const std::string& relative) {
    std::ifstream in(std::string(DIOFS_SOURCE_DIR) + "/" + relative);
    EXPECT_TRUE(in.good()) << relative << " not found under " << DIOFS_SOURCE_DIR;
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

std::string trimmed(std::string_view s) {
    size_t start = s.find_first_not_of(" \t");
    if (start == std::string_view::npos)
        return "";
    return std::string(s.substr(start, s.find_last_not_of(" \t") - start + 1));
}

// The README's table under the header "| option | default | meaning |": each row's
// `backticked` words of the first cell, and its default cell without backticks.
std::vector<DocEntry> readme_options_table() {
    std::vector<DocEntry> entries;
    auto lines = lines_of(source_file("README.md"));
    auto header = std::find(lines.begin(), lines.end(), "| option | default | meaning |");
    EXPECT_NE(header, lines.end()) << "README.md: no table headed '| option | default | meaning |'";
    if (header == lines.end())
        return entries;
    for (auto it = header + 2; it != lines.end() && it->starts_with("|"); ++it) {
        std::vector<std::string> cells;
        std::istringstream row(it->substr(1));
        for (std::string cell; std::getline(row, cell, '|');)
            cells.push_back(trimmed(cell));
        DocEntry entry;
        entry.where = "README.md:" + std::to_string(it - lines.begin() + 1);
        EXPECT_GE(cells.size(), 3u) << entry.where;
        if (cells.size() < 3)
            continue;
        for (size_t open = cells[0].find('`'); open != std::string::npos;) {
            size_t close = cells[0].find('`', open + 1);
            entry.words.push_back(cells[0].substr(open + 1, close - open - 1));
            open = close == std::string::npos ? close : cells[0].find('`', close + 1);
        }
        std::erase(cells[1], '`');
        entry.default_text = cells[1];
        entries.push_back(entry);
    }
    return entries;
}

// The man page's text with the font escapes taken off and "\-" made "-".
std::string plain_roff(std::string text) {
    for (const char* escape : {"\\fB", "\\fI", "\\fR", "\\&"})
        for (size_t at; (at = text.find(escape)) != std::string::npos;)
            text.erase(at, std::string_view(escape).size());
    for (size_t at; (at = text.find("\\-")) != std::string::npos;)
        text.erase(at, 1);
    return text;
}

// diofs.8's OPTIONS section: each .TP tag (".B name, name" or ".BI name= VALUE") and the
// paragraph under it, macros taken off.
std::vector<DocEntry> man_options() {
    std::vector<DocEntry> entries;
    auto lines = lines_of(source_file("docs/diofs.8"));
    auto section = std::find(lines.begin(), lines.end(), ".SH OPTIONS");
    EXPECT_NE(section, lines.end()) << "docs/diofs.8: no .SH OPTIONS";
    for (auto it = section; it != lines.end() && it + 1 != lines.end(); ++it) {
        if (it != section && it->starts_with(".SH"))
            break;
        if (*it != ".TP")
            continue;
        DocEntry entry;
        entry.where = "docs/diofs.8:" + std::to_string(it - lines.begin() + 2);
        std::string tag = plain_roff(*++it);
        if (tag.starts_with(".BI ")) {
            std::istringstream args(tag.substr(4));
            std::string name, value;
            args >> name >> value;
            entry.words.push_back(name + value);
        } else if (tag.starts_with(".B ")) {
            std::istringstream words(tag.substr(3));
            for (std::string word; std::getline(words, word, ',');)
                entry.words.push_back(trimmed(word));
        } else {
            ADD_FAILURE() << entry.where << ": a .TP tag that is not .B or .BI: " << tag;
        }
        for (auto body = it + 1; body != lines.end() && *body != ".TP" && !body->starts_with(".SH");
             ++body) {
            std::string text = plain_roff(*body);
            if (text.starts_with("."))  // a macro: ".BR word ," keeps its words
                text = text.find(' ') == std::string::npos ? "" : text.substr(text.find(' ') + 1);
            entry.default_text += text + " ";
        }
        entries.push_back(entry);
    }
    return entries;
}

// "readahead=SIZE" -> "readahead"
std::string option_name(const std::string& word) { return word.substr(0, word.find('=')); }

const OptionSpec* spec_named(const std::string& name) {
    for (const auto& spec : option_specs())
        if (spec.name == name)
            return &spec;
    return nullptr;
}

// How a document must write a spec: "readahead=SIZE", "dbopt".
std::string documented_form(const OptionSpec& spec) {
    return std::string(spec.name) + (spec.takes_value() ? "=" + std::string(spec.value) : "");
}

// Every word a document names is an option diofs accepts: a spec (in the form it takes), a
// word of mount(8)'s that diofs ignores, or a command-line switch (-f, -d). "..." ends a list.
void expect_every_word_is_accepted(const std::vector<DocEntry>& entries) {
    for (const auto& entry : entries)
        for (std::string word : entry.words) {
            if (word == "...")
                continue;
            if (word.starts_with("-")) {
                EXPECT_TRUE(parse({word, "/b", "/m"}).errors.empty())
                    << entry.where << ": '" << word << "' is not a switch of diofs";
                continue;
            }
            // "x-*", "comment=...": a pattern of words; one instance of it stands for it.
            std::string instance = word;
            for (std::string_view pattern : {"*", "..."})
                if (instance.ends_with(pattern))
                    instance.replace(instance.size() - pattern.size(), pattern.size(), "x");
            if (is_mount_only_word(instance))
                continue;
            const OptionSpec* spec = spec_named(option_name(word));
            EXPECT_NE(spec, nullptr) << entry.where << ": '" << word
                                     << "' is not in option_specs() (fs/options.cpp)";
            if (spec) {
                EXPECT_EQ(word, documented_form(*spec)) << entry.where;
            }
        }
}

// The entries that name SPEC, by name.
std::vector<const DocEntry*> entries_naming(const std::vector<DocEntry>& entries,
                                            const OptionSpec& spec) {
    std::vector<const DocEntry*> found;
    for (const auto& entry : entries)
        for (const auto& word : entry.words)
            if (option_name(word) == spec.name) {
                found.push_back(&entry);
                break;
            }
    return found;
}

// Every word of the document is accepted, and each option with help has one entry of its own
// whose default SAYS_DEFAULT finds there (generic mount flags have no help: they are grouped,
// and only need to be accepted).
template <typename SaysDefault>
void expect_matches_option_specs(const std::vector<DocEntry>& entries,
                                 const std::string& document, SaysDefault says_default) {
    ASSERT_FALSE(entries.empty()) << document << ": no options found";
    expect_every_word_is_accepted(entries);
    for (const auto& spec : option_specs()) {
        if (spec.help.empty())
            continue;
        auto found = entries_naming(entries, spec);
        if (found.size() != 1) {
            ADD_FAILURE() << document << " lists '" << spec.name << "' " << found.size()
                          << " times, not once (it is in option_specs(), fs/options.cpp)";
            continue;
        }
        EXPECT_TRUE(says_default(spec, *found.front()))
            << found.front()->where << ": the entry of '" << spec.name
            << "' does not give its default, '" << spec.default_text
            << "' in option_specs() (fs/options.cpp)";
    }
}

TEST(OptionDocs, EveryOptionHasOneLineOfHelpAndADefault) {
    for (const auto& spec : option_specs()) {
        EXPECT_EQ(spec.help.find('\n'), std::string_view::npos) << spec.name;
        if (spec.help.empty())
            continue;
        EXPECT_FALSE(spec.default_text.empty()) << spec.name;
        const std::string line = "      " + documented_form(spec) + " ";
        EXPECT_NE(usage_text().find(line), std::string::npos) << spec.name << " not in --help";
    }
}

// A default that is a value (4M, 1, info) given as NAME=DEFAULT leaves the options as they
// are; a flag that is "off" changes them when given, one that is "on" does not. Other
// defaults are words ("discovered", "one per CPU, at least 2"), which no option accepts.
TEST(OptionDocs, DefaultsAreTheParsersDefaults) {
    const Options defaults = parse({"/b", "/m"}).options;
    for (const auto& spec : option_specs()) {
        if (spec.help.empty())
            continue;
        const std::string text(spec.default_text);
        if (!spec.takes_value()) {
            auto given = parse({"/b", "/m", "-o", std::string(spec.name)});
            if (!given.errors.empty())  // io_uring in a libfuse 3.14 build
                continue;
            if (text == "off") {
                EXPECT_NE(given.options, defaults) << spec.name << ": given, it changes nothing";
            } else if (text == "on") {
                EXPECT_EQ(given.options, defaults) << spec.name << ": given, it changes options";
            }
            continue;
        }
        auto given = parse({"/b", "/m", "-o", std::string(spec.name) + "=" + text});
        // Whether writeback= was given is kept beside its value (a window asked for that
        // cannot be had is a warning, the default one a line of the log): the value is what
        // must be the default.
        if (spec.name == "writeback") {
            EXPECT_TRUE(given.options.writeback_given);
            given.options.writeback_given = false;
        }
        if (given.errors.empty()) {
            EXPECT_EQ(given.options, defaults) << spec.name << "=" << text << " is not the default";
        } else {
            EXPECT_FALSE(text.empty() || std::isdigit(static_cast<unsigned char>(text[0])))
                << spec.name << ": default '" << text << "' is not a value it accepts";
        }
    }
}

TEST(OptionDocs, ReadmeTableMatchesOptionSpecs) {
    expect_matches_option_specs(readme_options_table(), "README.md's options table",
                                [](const OptionSpec& spec, const DocEntry& entry) {
                                    return entry.default_text == spec.default_text;
                                });
}

// "(default 4M)", "(default 1, 0 to 3600)", "(default: discovered)"
TEST(OptionDocs, ManPageOptionsMatchOptionSpecs) {
    expect_matches_option_specs(
        man_options(), "docs/diofs.8's OPTIONS", [](const OptionSpec& spec, const DocEntry& entry) {
            for (std::string lead : {"(default ", "(default: "})
                for (char end : {')', ',', ';'})
                    if (entry.default_text.find(lead + std::string(spec.default_text) + end) !=
                        std::string::npos)
                        return true;
            return false;
        });
}

std::string fuse_o(const Options& o, bool root) {
    auto args = fuse_arguments(o, root);
    EXPECT_GE(args.size(), 3u);
    EXPECT_EQ(args[1], "-o");
    return args[2];
}

// io_uring is libfuse's own session option (3.18): handed on to it; a build with an older
// libfuse refuses it by name, saying which libfuse it has.
TEST(FuseArguments, IoUringAsTheLibfuseAllows) {
    auto r = parse({"/b", "/m", "-o", "dbopt,io_uring"});
#if FUSE_MINOR_VERSION >= 18
    ASSERT_TRUE(r.errors.empty()) << r.errors.front();
    EXPECT_TRUE(r.options.io_uring);
    EXPECT_EQ(fuse_o(r.options, false), "subtype=diofs,fsname=/b,default_permissions,io_uring");
#else
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_TRUE(any_error_mentions(r, "io_uring: this diofs is built with libfuse 3." +
                                          std::to_string(FUSE_MINOR_VERSION)))
        << r.errors.front();
    EXPECT_FALSE(r.options.io_uring);
#endif
    EXPECT_FALSE(parse({"/b", "/m"}).options.io_uring);
    EXPECT_NE(usage_text().find("io_uring"), std::string::npos);
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

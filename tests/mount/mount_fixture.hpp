#pragma once
// Real mounts for the tests: a private temporary directory with backing/, mnt/ and ref/, and a
// `diofs backing mnt -f` child process that serves mnt/ for the life of one DiofsMount.
//
//   <tmp>/backing   the directory diofs mirrors
//   <tmp>/mnt       the mount point
//   <tmp>/ref       a plain directory on the same filesystem as backing/: the reference that
//                   differential tests run the same operations on
//   <tmp>/daemon.log  the daemon's stderr
//
// Teardown is unconditional (destructor): unmount our own mount point (lazily only as a last
// resort), reap our own child by its PID (SIGTERM, then SIGKILL), remove the directory.

#include "emergency_teardown.hpp"

#include <gtest/gtest.h>

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace diofs_test {

// Why a FUSE mount cannot be made here (no /dev/fuse, or it cannot be opened), or nothing.
std::optional<std::string> fuse_unavailable_reason();

// CI=true in the environment: a missing FUSE is a failure, not a skip.
bool ci_mode();

// The errno's name ("ENOENT"), or its number.
std::string errno_name(int err);

// A new private directory $TMPDIR/diofs-KIND-XXXXXX (TMPDIR defaults to /tmp; tests/run.sh
// gives each run a TMPDIR of its own, and looks there for anything a test left behind), mode
// 0755 so that the permission tests' other users can reach what is inside. "" on failure, with
// errno set.
std::string make_temporary_directory(const std::string& kind);
// Removes `dir` and what is in it as far as it can, never crossing into a mount (a directory
// that is still a mount point, or holds one, stays).
void remove_temporary_directory(const std::string& dir);

class DiofsMount {
public:
    // `options` go to the daemon as "-o a,b,c" (nothing when empty).
    explicit DiofsMount(std::vector<std::string> options = {});
    ~DiofsMount();
    DiofsMount(const DiofsMount&) = delete;
    DiofsMount& operator=(const DiofsMount&) = delete;

    // Before start(): serve `backing` (an existing directory, for instance on a loop device)
    // instead of <tmp>/backing, and use `ref` (an existing directory, "" for <tmp>/ref) as the
    // reference directory. stop() leaves both in place: they belong to the caller.
    void use_directories(std::string backing, std::string ref = "");

    // Creates the directories, starts the daemon and waits (at most `timeout`) until mnt/ is a
    // fuse.diofs mount. Returns an empty string on success, otherwise what went wrong (with the
    // daemon's log). With `on_mounted`, the wait polls without sleeping and calls it the moment
    // the mount appears in /proc/self/mountinfo.
    std::string start(std::chrono::milliseconds timeout = std::chrono::seconds(10),
                      const std::function<void()>& on_mounted = {});

    // Unmounts, reaps the daemon and removes the directory; safe to call more than once.
    // Returns a description of anything abnormal (the daemon died before the unmount, exited
    // with a status other than 0, needed a signal or a lazy unmount...), empty if all was well.
    std::string stop();

    const std::string& dir() const { return dir_; }
    const std::string& backing() const { return backing_; }
    const std::string& mnt() const { return mnt_; }
    const std::string& ref() const { return ref_; }
    const std::string& log_path() const { return log_path_; }
    pid_t pid() const { return pid_; }

    // Ends the daemon with SIGTERM, as a service manager stops it, whatever the test still
    // holds open in the mount, and waits (at most `timeout`) for it to exit. Returns how it
    // ended ("exited with status 0", with its sanitizer report if it wrote one), or why it did
    // not. stop() then only cleans up.
    std::string terminate(std::chrono::milliseconds timeout = std::chrono::seconds(20));

    // True while the daemon process runs (it is reaped here if it has exited).
    bool daemon_alive();
    // How the daemon ended, once daemon_alive() returned false or stop() ran ("" before).
    std::string exit_description() const { return exit_description_; }

    // True while mnt/ is listed in /proc/self/mountinfo as fuse.diofs.
    bool is_mounted() const;

    // The daemon's log so far, or its last `max_lines` lines.
    std::string log() const;
    std::string log_tail(size_t max_lines = 40) const;
    // What a sanitizer (ASan, LSan, UBSan, TSan: a build with DIOFS_SANITIZE) wrote into the
    // log, from its first report on (at most `max_lines` lines), or "".
    std::string sanitizer_report(size_t max_lines = 300) const;

    // Sends SIGUSR1 and waits (bounded) for the daemon to log a new "stats: inodes=N" line;
    // returns N, or nothing when no new line came.
    std::optional<long> inode_count(std::chrono::milliseconds timeout = std::chrono::seconds(5));

private:
    bool wait_for_exit(std::chrono::milliseconds timeout);
    bool mountpoint_listed_fast() const;
    void note_exit(int status);
    // exit_description(), and the sanitizer report when the exit was not clean.
    std::string ending() const;
    size_t count_stats_lines(long* last) const;

    std::vector<std::string> options_;
    std::string given_backing_, given_ref_;
    std::string dir_, backing_, mnt_, ref_, log_path_;
    pid_t pid_ = -1;
    bool reaped_ = false;
    int exit_status_ = 0;
    std::string exit_description_;
    bool stopped_ = false;
    bool terminated_ = false;
    // stop(), should the test never get there (emergency_teardown.hpp).
    EmergencyTeardown emergency_;
};

// The accessors of a fixture that holds a DiofsMount (MountTest, DbOptTest): the mount, and
// paths in its mount point, reference and backing directories ("" for the directory itself).
class MountPaths {
protected:
    virtual ~MountPaths() = default;
    virtual DiofsMount& mount() const = 0;
    std::string mnt(const std::string& rel = "") const { return join(mount().mnt(), rel); }
    std::string ref(const std::string& rel = "") const { return join(mount().ref(), rel); }
    std::string backing(const std::string& rel = "") const { return join(mount().backing(), rel); }
    static std::string join(const std::string& base, const std::string& rel) {
        return rel.empty() ? base : base + "/" + rel;
    }
};

// A test with a fresh mount: SetUp skips (or, with CI=true, fails) without FUSE, then mounts;
// TearDown unmounts and adds a failure when the daemon did not survive the test or did not
// exit cleanly. The mount is also torn down by the destructor whatever happens.
class MountTest : public ::testing::Test, protected MountPaths {
protected:
    void SetUp() override;
    void TearDown() override;
    // The daemon's -o options for this fixture.
    virtual std::vector<std::string> mount_options() const { return {}; }

    DiofsMount& mount() const override { return *mount_; }

    std::unique_ptr<DiofsMount> mount_;
};

// Skips (or fails under CI=true) the current test when FUSE cannot be used: for tests that do
// not derive from MountTest. Use in a function returning void.
#define DIOFS_REQUIRE_FUSE()                                                              \
    do {                                                                                  \
        if (auto diofs_why_ = ::diofs_test::fuse_unavailable_reason()) {                  \
            if (::diofs_test::ci_mode())                                                  \
                FAIL() << "FUSE is required under CI=true: " << *diofs_why_;              \
            GTEST_SKIP() << "FUSE is not available: " << *diofs_why_;                     \
        }                                                                                 \
    } while (0)

}  // namespace diofs_test

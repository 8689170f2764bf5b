#pragma once
// Teardown that still runs when a test never gets to its own: the test reached its time limit
// (ctest then kills it with SIGKILL, and every process under it: destructors never run, and the
// FUSE mounts, loop devices and loop mounts it made stay behind), or the run was interrupted
// (Ctrl-C, SIGTERM, SIGHUP).
//
// Whatever holds something outside the process (DiofsMount, LoopFilesystem, Ramfs) registers its
// teardown for as long as it holds it. A guard thread, started before main() in every program
// that links this, waits for either
//   - DIOFS_TEST_DEADLINE seconds since the program started (tests/mount/CMakeLists.txt sets it
//     well before ctest's TIMEOUT, so that the teardown has time to run), or
//   - SIGINT, SIGTERM or SIGHUP to this process (blocked in every other thread of it, so that
//     a thread stuck in a request to a stopped daemon cannot swallow one; a child the test
//     forks takes them as usual),
// and then runs every registered teardown, newest first (a mount before the loop filesystem
// under it), ends the test's remaining child processes (SIGKILL, by PID: they are ours), and
// ends the program: status 1 at the deadline, 128 + the signal's number for a signal.
//
// The guard takes the registry's lock and never lets it go: a thread that reaches unregister()
// meanwhile waits there until the program ends, so a teardown never runs twice at once. A
// teardown may block (a request to a stopped daemon); each one here is bounded (umount retries,
// waits of seconds, then SIGKILL).

#include <functional>
#include <string>

namespace diofs_test {

class EmergencyTeardown {
public:
    EmergencyTeardown() = default;
    // Registers `teardown`, described as `what` in the guard's report, which also shows what
    // `teardown` returns (what was abnormal, "" when nothing was). `directory`, when given, is
    // removed last, after every teardown (not crossing into a mount): the test's threads go on
    // while the guard works, and one may still have written there after its own teardown.
    EmergencyTeardown(std::string what, std::function<std::string()> teardown,
                      std::string directory = "");
    ~EmergencyTeardown() { reset(); }
    EmergencyTeardown(const EmergencyTeardown&) = delete;
    EmergencyTeardown& operator=(const EmergencyTeardown&) = delete;
    EmergencyTeardown(EmergencyTeardown&& other) noexcept : id_(other.id_) { other.id_ = 0; }
    EmergencyTeardown& operator=(EmergencyTeardown&& other) noexcept;

    // Unregisters (the owner tears down itself from here on). Safe to call more than once.
    void reset();

private:
    unsigned long id_ = 0;
};

}  // namespace diofs_test

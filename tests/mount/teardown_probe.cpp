// A test that hangs, for emergency_teardown_test.cpp: an xfs loop filesystem on 4096-byte
// sectors, diofs mounted over a directory on it, the daemon stopped (SIGSTOP), then a child
// process and the main thread each wait in a request to the mount. Only the emergency teardown
// (a deadline in DIOFS_TEST_DEADLINE, or a signal) can end it.
//
// Prints one line once everything is in place, and flushes it:
//   ready MOUNTPOINT LOOP_DEVICE DAEMON_PID CHILD_PID
// Exit status 2 when it could not get there (the reason on stderr).

#include "loop_device.hpp"
#include "mount_fixture.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>

int main() {
    using namespace diofs_test;
    LoopFilesystem loop;
    if (std::string error = loop.setup(); !error.empty()) {
        std::fprintf(stderr, "probe: loop filesystem: %s\n", error.c_str());
        return 2;
    }
    const std::string backing = loop.path("backing");
    ::mkdir(backing.c_str(), 0755);
    DiofsMount mount({"dbopt"});
    mount.use_directories(backing, backing);
    if (std::string error = mount.start(); !error.empty()) {
        std::fprintf(stderr, "probe: mount: %s\n", error.c_str());
        return 2;
    }
    const std::string file = mount.mnt() + "/file";
    ::kill(mount.pid(), SIGSTOP);
    const pid_t child = ::fork();
    if (child == 0) {
        struct stat st;
        ::stat(file.c_str(), &st);  // waits for the stopped daemon
        ::_exit(0);
    }
    std::printf("ready %s %s %d %d\n", mount.mnt().c_str(), loop.device().c_str(),
                static_cast<int>(mount.pid()), static_cast<int>(child));
    std::fflush(stdout);
    struct stat st;
    ::stat((file + "2").c_str(), &st);  // waits too
    // The daemon was killed by the teardown, which then ends the program: never here.
    for (;;)
        std::this_thread::sleep_for(std::chrono::seconds(1));
}

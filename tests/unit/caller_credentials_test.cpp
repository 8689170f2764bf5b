// The credentials switch fails closed: when the daemon cannot become the caller (setgroups or
// setfsuid refused: here because the process lost CAP_SETGID or CAP_SETUID), the switch
// throws, so the request is refused, and the thread is left with the daemon's own identity
// and groups, never half switched. Each case runs in a child process (capabilities dropped
// there stay there). Needs root; skipped otherwise.

#include "diofs/caller_credentials.hpp"

#include <gtest/gtest.h>

#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <vector>

namespace diofs {
namespace {

uid_t fsuid_now() { return static_cast<uid_t>(::syscall(SYS_setfsuid, static_cast<uid_t>(-1))); }
gid_t fsgid_now() { return static_cast<gid_t>(::syscall(SYS_setfsgid, static_cast<gid_t>(-1))); }

std::vector<gid_t> groups_now() {
    std::vector<gid_t> groups(static_cast<size_t>(std::max(0, ::getgroups(0, nullptr))));
    ::getgroups(static_cast<int>(groups.size()), groups.data());
    return groups;
}

// Removes capability `cap` from the calling process's effective and permitted sets.
bool drop_capability(int cap) {
    __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (::syscall(SYS_capget, &header, data) != 0)
        return false;
    data[cap / 32].effective &= ~(1u << (cap % 32));
    data[cap / 32].permitted &= ~(1u << (cap % 32));
    return ::syscall(SYS_capset, &header, data) == 0;
}

Credentials a_user() {
    Credentials c;
    c.uid = 4321;
    c.gid = 4321;
    c.groups = {4321, 4322};
    c.switches = true;
    return c;
}

// Runs `body` in a child; its return value is the child's exit status: 0 passes, any other
// number is the step that failed.
int in_child(const std::function<int()>& body) {
    pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(body());
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

class CallerCredentialsTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0)
            GTEST_SKIP() << "switching credentials needs root";
    }
};

TEST_F(CallerCredentialsTest, ASwitchActsAsTheCallerAndComesBack) {
    EXPECT_EQ(in_child([] {
                  CallerCredentials::init_process();
                  const std::vector<gid_t> before = groups_now();
                  {
                      AsCredentials as(a_user());
                      if (fsuid_now() != 4321 || fsgid_now() != 4321)
                          return 1;
                      if (groups_now() != a_user().groups)
                          return 2;
                  }
                  if (fsuid_now() != 0 || fsgid_now() != 0)
                      return 3;
                  return groups_now() == before ? 0 : 4;
              }),
              0);
}

// setgroups refused (no CAP_SETGID): the switch throws with EPERM, before the identity changed.
TEST_F(CallerCredentialsTest, RefusedSetgroupsRefusesTheRequest) {
    EXPECT_EQ(in_child([] {
                  if (!drop_capability(CAP_SETGID))
                      return 10;
                  CallerCredentials::init_process();
                  const std::vector<gid_t> before = groups_now();
                  try {
                      AsCredentials as(a_user());
                      return 1;  // went on as the caller without the caller's groups
                  } catch (const CredentialsError& e) {
                      if (e.code().value() != EPERM)
                          return 2;
                  }
                  if (fsuid_now() != 0 || fsgid_now() != 0)
                      return 3;
                  if (groups_now() != before)
                      return 4;
                  AsCredentials daemon_itself(Credentials{});  // the next request goes on
                  return 0;
              }),
              0);
}

// setfsuid refused (no CAP_SETUID) after the groups and fsgid changed: the switch throws, and
// what it changed is undone: the daemon's groups and fsgid are back.
TEST_F(CallerCredentialsTest, RefusedSetfsuidRefusesTheRequestAndUndoesTheRest) {
    EXPECT_EQ(in_child([] {
                  if (!drop_capability(CAP_SETUID))
                      return 10;
                  CallerCredentials::init_process();
                  const std::vector<gid_t> before = groups_now();
                  try {
                      AsCredentials as(a_user());
                      return 1;  // went on with the daemon's uid
                  } catch (const CredentialsError& e) {
                      if (e.code().value() != EPERM)
                          return 2;
                  }
                  if (fsuid_now() != 0)
                      return 3;
                  if (fsgid_now() != 0)
                      return 4;
                  if (groups_now() != before)
                      return 5;
                  return 0;
              }),
              0);
}

}  // namespace
}  // namespace diofs

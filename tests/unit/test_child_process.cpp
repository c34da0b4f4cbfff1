// run_child: the one runner of other programs (nvidia-smi, udevadm, dcgmi, nvidia-persistenced --version),
// run as root. Real programs from /usr/bin, so what is checked is what the kernel and the loader did.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

#include "cli/child_process.h"

namespace gpuwarm {
namespace {

bool has_program(const char* path) { return ::access(path, X_OK) == 0; }

// Sets a variable for the test's length, then puts back what was there (the device run sets LD_LIBRARY_PATH).
struct ScopedEnv {
  std::string name;
  std::optional<std::string> before;
  ScopedEnv(const char* n, const char* value) : name(n) {
    if (const char* was = std::getenv(n); was != nullptr) {
      before = was;
    }
    ::setenv(n, value, 1);
  }
  ~ScopedEnv() {
    if (before) {
      ::setenv(name.c_str(), before->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

TEST(SystemProgramEnvironment, fixed_path_c_locale_and_only_the_loader_path_of_the_caller) {
  std::string keep = "LD_LIBRARY_PATH=/usr/local/nvidia/lib64";
  std::string preload = "LD_PRELOAD=/tmp/evil.so";
  std::string locale = "LC_ALL=de_DE.UTF-8";
  std::string path = "PATH=/home/user/bin:/usr/bin";
  std::string other = "ANSIBLE_VAR=x";
  char* parent[] = {preload.data(), locale.data(), path.data(), keep.data(), other.data(), nullptr};
  EXPECT_EQ(system_program_environment(parent),
            (std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", keep}));
  // Empty and relative entries name the current directory: dropped, and a list of nothing but them too.
  std::string mixed = "LD_LIBRARY_PATH=:lib:/usr/local/nvidia/lib64::./x:/opt/nv;lib;";
  std::string relative_only = "LD_LIBRARY_PATH=.:";
  char* loader_lists[] = {mixed.data(), nullptr};
  EXPECT_EQ(system_program_environment(loader_lists).back(), "LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/opt/nv");
  char* relative[] = {relative_only.data(), nullptr};
  EXPECT_EQ(system_program_environment(relative).size(), 2u);
  char* empty[] = {nullptr};
  EXPECT_EQ(system_program_environment(empty),
            (std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}));
}

TEST(RunChild, the_program_sees_the_clean_environment) {
  if (!has_program("/usr/bin/env")) GTEST_SKIP() << "no /usr/bin/env";
  ScopedEnv preload("LD_PRELOAD", "");  // empty: the loader ignores it, and it must not be passed on either
  ScopedEnv secret("GPUWARM_TEST_SECRET", "from-the-caller");
  ScopedEnv locale("LC_ALL", "fr_FR.UTF-8");
  ScopedEnv loader("LD_LIBRARY_PATH", "/nonexistent/nvidia/lib64");
  auto r = run_child({"/usr/bin/env"}, 5000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output, "PATH=/usr/sbin:/usr/bin:/sbin:/bin\nLC_ALL=C\nLD_LIBRARY_PATH=/nonexistent/nvidia/lib64\n");
}

TEST(RunChild, refuses_a_relative_name_without_running_anything) {
  auto r = run_child({"env"}, 1000);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("relative name"), std::string::npos) << r.error().message;
  EXPECT_FALSE(run_child({}, 1000));
}

TEST(RunChild, exit_status_stdin_from_dev_null_and_a_missing_program) {
  if (!has_program("/usr/bin/false") || !has_program("/usr/bin/cat")) GTEST_SKIP() << "no coreutils";
  auto failed = run_child({"/usr/bin/false"}, 5000);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->exit_code, 1);
  // cat would wait forever on a terminal or an inherited pipe; /dev/null ends it at once.
  auto cat = run_child({"/usr/bin/cat"}, 5000);
  ASSERT_TRUE(cat);
  EXPECT_EQ(cat->exit_code, 0);
  EXPECT_EQ(cat->output, "");
  auto missing = run_child({"/nonexistent/nvidia-smi"}, 1000);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("cannot run /nonexistent/nvidia-smi"), std::string::npos);
}

TEST(RunChild, output_is_capped_and_the_rest_read_and_dropped) {
  if (!has_program("/usr/bin/head")) GTEST_SKIP() << "no /usr/bin/head";
  auto r = run_child({"/usr/bin/head", "-c", "300000", "/dev/zero"}, 10000, 1000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);  // it was never blocked on a full pipe
  EXPECT_EQ(r->output.size(), 1000u);
  EXPECT_TRUE(r->truncated);
}

TEST(RunChild, a_child_past_its_deadline_is_killed_and_reaped) {
  if (!has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /usr/bin/sleep";
  auto started = std::chrono::steady_clock::now();
  auto r = run_child({"/usr/bin/sleep", "30"}, 300);
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "/usr/bin/sleep did not finish within 300 ms");
  EXPECT_LT(took, std::chrono::seconds(3));
}

}  // namespace
}  // namespace gpuwarm

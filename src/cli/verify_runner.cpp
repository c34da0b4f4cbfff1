#include "cli/verify_runner.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "cli/collect_options.h"
#include "core/strings.h"

namespace gpuwarm {

namespace {

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (auto dir : split(path != nullptr ? path : "", ':')) {
    if (dir.empty()) {
      continue;
    }
    std::string candidate = std::string(dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return {};
}

DcgmOutcome run_dcgm(int level) {
  DcgmOutcome out;
  std::string dcgmi = find_on_path("dcgmi");
  if (dcgmi.empty()) {
    out.detail = "dcgmi not found on PATH (install DCGM to fold its diagnostic in)";
    return out;
  }
  out.available = true;
  std::string cmd = fmt::format("'{}' diag -r {} --json 2>&1", dcgmi, level);
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    out.detail = "could not run " + dcgmi;
    return out;
  }
  std::string text;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, pipe)) {
    text.append(buf, n);
  }
  int status = ::pclose(pipe);
  // DCGM reports each test's result as "Pass", "Fail", "Warn" or "Skip".
  bool failed = status != 0 || text.find("\"Fail\"") != std::string::npos;
  out.passed = !failed;
  out.detail = fmt::format("dcgmi diag -r {}: {}", level, failed ? "failures reported" : "no failures");
  return out;
}

void sleep_seconds(double s) {
  if (s > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(s));
  }
}

}  // namespace

void add_verify_options(CLI::App& app, VerifyOptions& options) {
  const char* group = "Verification";
  app.add_option("--settle", options.settle_seconds, "Seconds to wait before reading persistence again (0-600)")
      ->check(CLI::Range(0.0, 600.0).description(""))
      ->type_name("SECONDS")
      ->capture_default_str()
      ->group(group);
  app.add_option("--samples", options.samples, "Clock samples to take (1-1000)")
      ->check(CLI::Range(1u, 1000u).description(""))
      ->type_name("N")
      ->capture_default_str()
      ->group(group);
  app.add_option("--sample-interval", options.sample_interval_seconds, "Seconds between clock samples (0-60)")
      ->check(CLI::Range(0.0, 60.0).description(""))
      ->type_name("SECONDS")
      ->capture_default_str()
      ->group(group);
  app.add_option("--dcgm-level", options.dcgm_level,
                 "Also run `dcgmi diag -r N --json` (1 quick .. 4 extra long) where DCGM is installed")
      ->check(CLI::Range(1, 4).description(""))
      ->type_name("N")
      ->group(group);
}

VerifyInputs gather_verify_inputs(const CollectOptions& collect, const VerifyOptions& options, Snapshot before) {
  VerifyInputs in;
  in.before = std::move(before);
  sleep_seconds(options.settle_seconds);
  in.after = collect_from_options(collect);
  // The first sample is the "after" snapshot; each sample opens NVML afresh,
  // so a GPU that de-initializes between samples shows up as a swing.
  in.samples.push_back(in.after);
  CollectOptions sample_opts = collect;
  sample_opts.use_systemd = false;
  for (unsigned i = 1; i < options.samples; ++i) {
    sleep_seconds(options.sample_interval_seconds);
    in.samples.push_back(collect_from_options(sample_opts));
  }
  if (options.dcgm_level > 0) {
    in.dcgm = run_dcgm(options.dcgm_level);
  }
  return in;
}

}  // namespace gpuwarm

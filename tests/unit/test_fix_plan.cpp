#include <gtest/gtest.h>

#include <map>

#include <string_view>

#include "fix/plan.h"
#include "snapshot_builder.h"
#include "systemd/unit_file.h"

namespace gpuwarm {
namespace {

const char* k_ubuntu_unit =
    "[Unit]\nDescription=NVIDIA Persistence Daemon\nStopWhenUnneeded=true\n\n[Service]\nType=forking\n"
    "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose\n";
const char* k_good_unit =
    "[Unit]\nDescription=x\n[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced --user u\n"
    "Restart=on-failure\nPIDFile=/run/nvidia-persistenced/nvidia-persistenced.pid\n";

TEST(UnitFile, ParsesSectionsContinuationsAndResets) {
  auto s = parse_unit_file(
      "# comment\n[Unit]\nStopWhenUnneeded=yes\n[Service]\nExecStart=/bin/a \\\n  --x \"two words\"\n"
      "ExecStart=\nExecStart=-/bin/b --y\nRestart=no\nRestart=always\n");
  EXPECT_EQ(unit_value(s, "Unit", "StopWhenUnneeded"), "yes");
  EXPECT_EQ(unit_value(s, "Service", "Restart"), "always");
  EXPECT_EQ(unit_exec_start(s), (std::vector<std::string>{"/bin/b", "--y"}));
  auto first = parse_unit_file("[Service]\nExecStart=/bin/a \\\n  --x \"two words\"\n");
  EXPECT_EQ(unit_exec_start(first), (std::vector<std::string>{"/bin/a", "--x", "two words"}));
}

TEST(FixPlan, DropInFromTheVendorUnit) {
  struct Case {
    const char* name;
    const char* unit;
    std::vector<const char*> must_contain;
    bool empty;
  };
  const Case cases[] = {
      {"ubuntu unit", k_ubuntu_unit,
       {"StopWhenUnneeded=no", "Restart=on-failure",
        "ExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --verbose\n"},
       false},
      {"unit that needs nothing", k_good_unit, {}, true},
      {"legacy PID file dir", "[Service]\nRestart=always\nPIDFile=/var/run/nvidia-persistenced/x.pid\n",
       {"PIDFile=/run/nvidia-persistenced/x.pid"}, false},
      {"no Restart= at all", "[Service]\nExecStart=/usr/bin/nvidia-persistenced\n", {"Restart=on-failure"}, false},
  };
  for (const auto& c : cases) {
    std::string d = render_dropin(c.unit, {});
    EXPECT_EQ(d.empty(), c.empty) << c.name << "\n" << d;
    // A vendor's Restart=always restarts more often than what gpuwarm would write: kept, not overridden; any
    // other drop-in sets on-failure.
    if (!c.empty) {
      const bool always = std::string(c.unit).find("Restart=always") != std::string::npos;
      EXPECT_EQ(d.find("Restart=") == std::string::npos, always) << c.name << "\n" << d;
      EXPECT_EQ(d.find("Restart=on-failure\n") != std::string::npos, !always) << c.name << "\n" << d;
    }
    for (const char* needle : c.must_contain) {
      EXPECT_NE(d.find(needle), std::string::npos) << c.name << " lacks " << needle << "\n" << d;
    }
    if (!c.empty) {
      EXPECT_EQ(d.find("ExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced "
                       "--no-persistence-mode"),
                std::string::npos);
    }
  }
}

// The drop-in's ExecStart= is the vendor's as written, less the flag: its $VARIABLES, %specifiers, quotes and
// prefixes keep their meaning. From D-Bus (no unit text), $ stays a variable and a literal % is doubled.
TEST(FixPlan, DropInExecStartMeansWhatTheVendorMeant) {
  struct Case {
    const char* name;
    std::string unit;
    std::vector<std::string> effective;
    const char* exec_start;
  };
  const Case cases[] = {
      {"variables and specifiers",
       "[Service]\nExecStart=-/usr/bin/nvidia-persistenced --user %i $NVP_OPTS --no-persistence-mode ${MORE}\n", {},
       "ExecStart=-/usr/bin/nvidia-persistenced --user %i $NVP_OPTS ${MORE}\n"},
      {"quoted words, and the flag quoted",
       "[Service]\nExecStart=/usr/bin/nvidia-persistenced \"--no-persistence-mode\" --log \"a b\" 'c d'\n", {},
       "ExecStart=/usr/bin/nvidia-persistenced --log \"a b\" 'c d'\n"},
      {"continued lines", "[Service]\nExecStart=/usr/bin/nvidia-persistenced \\\n  --no-persistence-mode --verbose\n", {},
       "ExecStart=/usr/bin/nvidia-persistenced --verbose\n"},
      {"an escaped quote inside a quoted word",
       "[Service]\nExecStart=/usr/bin/nvidia-persistenced \"--log=\\\"a b\\\" c\" --no-persistence-mode\n", {},
       "ExecStart=/usr/bin/nvidia-persistenced \"--log=\\\"a b\\\" c\"\n"},
      {"the flag inside a quoted word with escaped quotes stays",
       "[Service]\nExecStart=/usr/bin/nvidia-persistenced \"--x=\\\" --no-persistence-mode \\\"\" --no-persistence-mode\n",
       {}, "ExecStart=/usr/bin/nvidia-persistenced \"--x=\\\" --no-persistence-mode \\\"\"\n"},
      {"an escaped blank and an escaped flag",
       "[Service]\nExecStart=/usr/bin/nvidia-persistenced --dir=a\\ b \\x2d-no-persistence-mode\n", {},
       "ExecStart=/usr/bin/nvidia-persistenced --dir=a\\ b\n"},
      {"from D-Bus", "", {"/usr/bin/nvidia-persistenced", "$NVP_OPTS", "--no-persistence-mode", "100%"},
       "ExecStart=/usr/bin/nvidia-persistenced $NVP_OPTS 100%%\n"},
  };
  for (const Case& c : cases) {
    std::string d = render_dropin(c.unit, c.effective);
    EXPECT_NE(d.find(std::string("ExecStart=\n") + c.exec_start), std::string::npos) << c.name << "\n" << d;
  }
}

// systemd's reading of ExecStart= words (systemd.service(5), "Command lines"): quotes anywhere, C escapes.
TEST(UnitFile, CommandLinesSplitAsSystemdSplitsThem) {
  struct Case {
    const char* line;
    std::vector<std::string> words;
  };
  const Case cases[] = {
      {"/usr/bin/nvidia-persistenced --user nvidia-persistenced", {"/usr/bin/nvidia-persistenced", "--user",
                                                                   "nvidia-persistenced"}},
      {"a \"b c\" 'd e'", {"a", "b c", "d e"}},
      {"--log=\"x y\"z", {"--log=x yz"}},
      {"\"a \\\"quoted\\\" word\"", {"a \"quoted\" word"}},
      {"'it\\'s'", {"it's"}},
      {"a\\ b c", {"a b", "c"}},
      {"\\x41\\102\\u00e9\\s.", {"AB\xc3\xa9 ."}},
      {"back\\\\slash", {"back\\slash"}},
      {"\\q kept \\x0g", {"\\q", "kept", "\\x0g"}},
      {"trailing\\", {"trailing\\"}},
      {"\"\"", {""}},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(split_command_line(c.line), c.words) << c.line;
  }
}

// What gpuwarm writes from D-Bus argv reads back as the same argv.
TEST(FixPlan, DropInFromDbusRoundTrips) {
  const std::vector<std::string> argv = {"/usr/bin/nvidia-persistenced", "--log=\"a b\"", "back\\slash", "it's",
                                         "tab\there", "--no-persistence-mode"};
  std::string d = render_dropin("", argv);
  auto at = d.find("ExecStart=\nExecStart=");
  ASSERT_NE(at, std::string::npos) << d;
  std::string line = d.substr(at + 21, d.find('\n', at + 21) - (at + 21));
  EXPECT_EQ(split_command_line(line), std::vector<std::string>(argv.begin(), argv.end() - 1)) << line;
}

std::vector<StepKind> kinds(const FixPlan& p) {
  std::vector<StepKind> out;
  for (const auto& s : p.steps) out.push_back(s.kind);
  return out;
}

TEST(FixPlan, StepsFollowTheDiagnosis) {
  using K = StepKind;
  struct Case {
    const char* name;
    std::function<void(Snapshot&, FixInputs&)> mutate;
    FixOutcome outcome;
    std::vector<StepKind> steps;
  };
  const std::vector<Case> cases = {
      {"healthy: nothing", [](Snapshot&, FixInputs&) {}, FixOutcome::nothing_to_do, {}},
      {"disabled and stopped, persistence off",
       [](Snapshot& s, FixInputs& in) {
         s.service.unit_file_state = Fact<std::string>::known("disabled");
         s.service.active_state = Fact<std::string>::known("inactive");
         s.daemon.processes.clear();
         for (auto& g : s.nvml.gpus) g.persistence = Fact<bool>::known(false);
         in.vendor_unit_text = k_good_unit;
       },
       FixOutcome::act, {K::enable, K::reload, K::start}},
      {"ubuntu unit running with the flag",
       [](Snapshot& s, FixInputs& in) {
         s.daemon.processes[0].argv.push_back("--no-persistence-mode");
         in.vendor_unit_text = k_ubuntu_unit;
       },
       FixOutcome::act, {K::write_file, K::reload, K::restart}},
      {"drop-in already written: idempotent",
       [](Snapshot& s, FixInputs& in) {
         s.service.unit_file_state = Fact<std::string>::known("disabled");
         in.vendor_unit_text = k_ubuntu_unit;
         in.dropin_exists = true;
         in.current_dropin_text = render_dropin(k_ubuntu_unit, {});
       },
       FixOutcome::act, {K::enable, K::reload}},
      {"an earlier run wrote the drop-in but its reload failed (NeedDaemonReload): reload, then restart",
       [](Snapshot& s, FixInputs& in) {
         s.daemon.processes[0].argv.push_back("--no-persistence-mode");
         s.service.need_daemon_reload = Fact<bool>::known(true);
         in.vendor_unit_text = k_ubuntu_unit;
         in.dropin_exists = true;
         in.current_dropin_text = render_dropin(k_ubuntu_unit, {});
       },
       FixOutcome::act, {K::reload, K::restart}},
      {"whether systemd loaded our drop-in unknown: a reload costs nothing",
       [](Snapshot& s, FixInputs& in) {
         s.service.unit_file_state = Fact<std::string>::known("disabled");
         s.service.need_daemon_reload = Fact<bool>::unknown("UnknownProperty");
         in.vendor_unit_text = k_ubuntu_unit;
         in.dropin_exists = true;
         in.current_dropin_text = render_dropin(k_ubuntu_unit, {});
       },
       FixOutcome::act, {K::reload, K::enable, K::reload}},
      {"only StopWhenUnneeded and Restart change: no restart (it would drop idle GPUs' settings)",
       [](Snapshot& s, FixInputs& in) {
         s.service.unit_file_state = Fact<std::string>::known("disabled");
         in.vendor_unit_text = "[Unit]\nStopWhenUnneeded=true\n[Service]\nType=forking\n"
                               "ExecStart=/usr/bin/nvidia-persistenced --user u\n";
       },
       FixOutcome::act, {K::write_file, K::reload, K::enable, K::reload}},
      {"systemd started the daemon with the flag, its arguments unread: restart",
       [](Snapshot& s, FixInputs& in) {
         s.service.unit_file_state = Fact<std::string>::known("disabled");
         s.service.exec_start = Fact<std::vector<std::string>>::known(
             {"/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "--no-persistence-mode"});
         s.daemon.processes[0].argv.clear();
         s.daemon.processes[0].argv_missing = "Permission denied";
         in.vendor_unit_text = k_ubuntu_unit;
       },
       FixOutcome::act, {K::write_file, K::reload, K::enable, K::reload, K::restart}},
      {"a daemon started outside systemd: refused, nothing written",
       [](Snapshot& s, FixInputs& in) {
         s.service.active_state = Fact<std::string>::known("inactive");
         s.service.unit_file_state = Fact<std::string>::known("disabled");
         in.vendor_unit_text = k_ubuntu_unit;
       },
       FixOutcome::refused, {}},
      {"another drop-in overrides ours: refused rather than a restart at every run",
       [](Snapshot& s, FixInputs& in) {
         s.daemon.processes[0].argv.push_back("--no-persistence-mode");
         s.service.exec_start = Fact<std::vector<std::string>>::known(
             {"/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "--no-persistence-mode"});
         in.vendor_unit_text = k_ubuntu_unit;
         in.dropin_exists = true;
         in.current_dropin_text = render_dropin(k_ubuntu_unit, {});
       },
       FixOutcome::refused, {}},
      // $OPTS from Environment=/EnvironmentFile= carries the flag: no drop-in of ours takes it out, and a restart
      // at every run would change nothing (review-s48 M2).
      {"the flag through a variable in ExecStart: refused rather than a restart at every run",
       [](Snapshot& s, FixInputs& in) {
         s.daemon.processes[0].argv.push_back("--no-persistence-mode");
         s.service.exec_start = Fact<std::vector<std::string>>::known(
             {"/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "$NVPD_OPTS"});
         in.vendor_unit_text = "[Service]\nType=forking\nEnvironment=NVPD_OPTS=--no-persistence-mode\n"
                               "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced $NVPD_OPTS\n";
       },
       FixOutcome::refused, {}},
      // The same set in a drop-in applied before gpuwarm's: that file and line are named (review-s51-diff M3).
      {"the flag through a variable set in an earlier drop-in: refused, naming it",
       [](Snapshot& s, FixInputs& in) {
         s.daemon.processes[0].argv.push_back("--no-persistence-mode");
         s.service.exec_start = Fact<std::vector<std::string>>::known(
             {"/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "$NVPD_OPTS"});
         in.vendor_unit_text = "[Service]\nType=forking\n"
                               "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced $NVPD_OPTS\n";
         in.earlier_dropins = {{"/etc/systemd/system/nvidia-persistenced.service.d/10-env.conf",
                                "[Service]\nEnvironment=NVPD_OPTS=--no-persistence-mode\n"}};
       },
       FixOutcome::refused, {}},
      // A `$` word alone is no evidence: gpuwarm's drop-in loaded, the daemon not restarted since (review-s48-diff M1).
      {"a variable in ExecStart, nothing setting the flag through it: restart",
       [](Snapshot& s, FixInputs& in) {
         s.daemon.processes[0].argv.push_back("--no-persistence-mode");
         s.service.exec_start = Fact<std::vector<std::string>>::known(
             {"/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "$NVP_OPTS"});
         in.vendor_unit_text = "[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced --user "
                               "nvidia-persistenced $NVP_OPTS --no-persistence-mode\n";
         in.dropin_exists = true;
         in.current_dropin_text = render_dropin(in.vendor_unit_text, {});
       },
       FixOutcome::act, {K::restart}},
      // A drop-in already loaded (an earlier run whose restart failed): the daemon still runs the old arguments.
      {"ExecStart already without the flag, the daemon not restarted since: restart",
       [](Snapshot& s, FixInputs& in) {
         s.daemon.processes[0].argv.push_back("--no-persistence-mode");
         in.vendor_unit_text = k_good_unit;
       },
       FixOutcome::act, {K::restart}},
      {"failed unit", [](Snapshot& s, FixInputs& in) {
         s.service.active_state = Fact<std::string>::known("failed");
         s.daemon.processes.clear();
         in.vendor_unit_text = k_good_unit;
       },
       FixOutcome::act, {K::reset_failed, K::start}},
      {"legacy flag only",
       [](Snapshot& s, FixInputs& in) {
         s.daemon.processes.clear();
         s.service.active_state = Fact<std::string>::known("inactive");
         in.vendor_unit_text = k_good_unit;
       },
       FixOutcome::act, {K::start}},
      {"reboot pending: refused", [](Snapshot& s, FixInputs&) { s.nvml.init_code = Fact<int>::known(18); },
       FixOutcome::refused, {}},
      {"thermal: refused",
       [](Snapshot& s, FixInputs&) {
         s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x40);
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
       },
       FixOutcome::refused, {}},
      {"no systemd",
       [](Snapshot& s, FixInputs&) {
         s.service.reachable = false;
         s.daemon.processes.clear();
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
       },
       FixOutcome::no_service_manager, {}},
      // Booted with systemd, its bus silent: the unit is unknown (UNK008); the no-systemd advice would start a
      // second, unmanaged daemon beside it (review-s44 M3).
      {"systemd runs but did not answer: refused",
       [](Snapshot& s, FixInputs&) {
         s.service.reachable = false;
         s.service.manager_booted = Fact<bool>::known(true);
         s.daemon.processes.clear();
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
       },
       FixOutcome::refused, {}},
      {"cannot tell: refused",
       [](Snapshot& s, FixInputs&) { s.nvml.gpus[1].persistence = Fact<bool>::unknown("UNKNOWN"); },
       FixOutcome::refused, {}},
      {"persistence optional (laptop): nothing to do",
       [](Snapshot& s, FixInputs&) {
         s.host.chassis_type = Fact<unsigned>::known(10);
         s.driver.kernel_gpus[0].runtime_d3 = Fact<std::string>::known("Enabled (coarse-grained)");
         s.daemon.processes.clear();
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
       },
       FixOutcome::nothing_to_do, {}},
      {"masked: refused",
       [](Snapshot& s, FixInputs&) { s.service.unit_file_state = Fact<std::string>::known("masked"); },
       FixOutcome::refused, {}},
      {"masked as systemd reports it: refused",
       [](Snapshot& s, FixInputs&) {
         s.service.load_state = Fact<std::string>::known("masked");
         s.service.unit_file_state = Fact<std::string>::known("masked");
         s.service.active_state = Fact<std::string>::known("inactive");
       },
       FixOutcome::refused, {}},
      // EnableUnitFiles fails on a runtime mask: refused before the drop-in is written, not after.
      {"masked until reboot: refused",
       [](Snapshot& s, FixInputs&) {
         s.service.load_state = Fact<std::string>::known("masked");
         s.service.unit_file_state = Fact<std::string>::known("masked-runtime");
         s.service.exec_start = Fact<std::vector<std::string>>::known(
             {"/usr/bin/nvidia-persistenced", "--no-persistence-mode"});
       },
       FixOutcome::refused, {}},
      {"a unit systemd cannot load: refused",
       [](Snapshot& s, FixInputs&) { s.service.load_state = Fact<std::string>::known("bad-setting"); },
       FixOutcome::refused, {}},
  };
  for (const auto& c : cases) {
    Snapshot s = test::healthy_snapshot();
    FixInputs in;
    in.vendor_unit_text = k_good_unit;
    c.mutate(s, in);
    FixPlan p = plan_fix(s, diagnose(s), in);
    EXPECT_EQ(p.outcome, c.outcome) << c.name << ": " << p.reason;
    EXPECT_EQ(kinds(p), c.steps) << c.name;
    if (std::string_view(c.name) == "the flag through a variable in ExecStart: refused rather than a restart at every run") {
      EXPECT_EQ(p.exit_code, ExitCode::action_needed);
      EXPECT_NE(p.reason.find("through $NVPD_OPTS in ExecStart, set at /lib/systemd/system/nvidia-persistenced.service:3: "
                              "Environment=NVPD_OPTS=--no-persistence-mode"),
                std::string::npos)
          << p.reason;
    }
    if (std::string_view(c.name) == "the flag through a variable set in an earlier drop-in: refused, naming it") {
      EXPECT_NE(p.reason.find("set at /etc/systemd/system/nvidia-persistenced.service.d/10-env.conf:2: "
                              "Environment=NVPD_OPTS=--no-persistence-mode"),
                std::string::npos)
          << p.reason;
    }
    if (std::string_view(c.name) == "masked until reboot: refused") {
      EXPECT_EQ(p.exit_code, ExitCode::action_needed);
      EXPECT_NE(p.reason.find("systemctl unmask --runtime"), std::string::npos) << p.reason;
    }
    if (std::string_view(c.name) == "systemd runs but did not answer: refused") {
      EXPECT_EQ(p.exit_code, ExitCode::cannot_tell);
      EXPECT_NE(p.reason.find("systemd runs on this host but did not answer"), std::string::npos) << p.reason;
      EXPECT_EQ(p.reason.find("init system"), std::string::npos) << p.reason;
    }
  }
}

TEST(FixPlan, RefusalsNameTheOverridingDropInAndTheOutsideDaemon) {
  Snapshot s = test::healthy_snapshot();
  s.daemon.processes[0].argv.push_back("--no-persistence-mode");
  s.service.exec_start = Fact<std::vector<std::string>>::known({"/usr/bin/nvidia-persistenced", "--no-persistence-mode"});
  s.service.drop_in_paths = Fact<std::vector<std::string>>::known(
      {"/etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf",
       "/etc/systemd/system/nvidia-persistenced.service.d/override.conf"});
  FixInputs in{k_ubuntu_unit, render_dropin(k_ubuntu_unit, {}), true, true, {}};
  FixPlan p = plan_fix(s, diagnose(s), in);
  EXPECT_EQ(p.exit_code, ExitCode::action_needed);
  EXPECT_NE(p.reason.find("still runs it with --no-persistence-mode: another file overrides gpuwarm's "
                          "/etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf: "
                          "/etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf, "
                          "/etc/systemd/system/nvidia-persistenced.service.d/override.conf"),
            std::string::npos)
      << p.reason;
  EXPECT_TRUE(p.steps.empty());

  Snapshot outside = test::healthy_snapshot();
  outside.service.active_state = Fact<std::string>::known("inactive");
  outside.service.unit_file_state = Fact<std::string>::known("disabled");
  FixPlan q = plan_fix(outside, diagnose(outside), {k_good_unit, "", false, true, {}});
  EXPECT_EQ(q.exit_code, ExitCode::action_needed);
  EXPECT_NE(q.reason.find("nvidia-persistenced runs (pid " + std::to_string(outside.daemon.processes[0].pid) +
                          ") outside systemd"),
            std::string::npos)
      << q.reason;
  EXPECT_TRUE(q.steps.empty());
}

// gpuwarm's drop-in is rewritten whole: lines config management added to it are named before they go (review-s48 L3).
TEST(FixPlan, ARewriteOfOurDropInNamesTheLinesItDrops) {
  Snapshot s = test::healthy_snapshot();
  s.service.unit_file_state = Fact<std::string>::known("disabled");
  FixInputs in{k_ubuntu_unit, "", true, true, {}};
  in.current_dropin_text = "# site\n[Service]\nNice=-5\nRestart=on-failure\nExecStart=\nExecStart=/usr/bin/old\n";
  FixPlan p = plan_fix(s, diagnose(s), in);
  ASSERT_EQ(p.outcome, FixOutcome::act);
  ASSERT_EQ(p.steps.front().kind, StepKind::write_file);
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_EQ(p.notes[0], std::string(k_dropin_path) +
                            " is rewritten whole; these lines of it are not gpuwarm's and go: Nice=-5 (keep site "
                            "settings in a drop-in of their own)");
  in.current_dropin_text = "[Service]\nRestart=on-failure\n";  // only what gpuwarm writes too: nothing to say
  EXPECT_TRUE(plan_fix(s, diagnose(s), in).notes.empty());
}

// A drop-in applied before gpuwarm's (10-local.conf) is part of what gpuwarm's overrides: its ExecStart= (a site's
// --nvidia-cfg-path) is the one kept, less the flag, not replaced by the unit file's (review-s51-fix M1).
TEST(FixPlan, ADropInAppliedBeforeGpuwarmsIsWhatItsDropInStartsFrom) {
  const std::string dir = "/etc/systemd/system/nvidia-persistenced.service.d/";
  Snapshot s = test::healthy_snapshot();
  s.service.reachable = true;
  s.service.unit_text = Fact<std::string>::known(k_ubuntu_unit);
  s.service.gpuwarm_dropin_text = Fact<std::string>::known("");
  s.daemon.user_exists = Fact<bool>::known(true);
  s.service.drop_in_paths = Fact<std::vector<std::string>>::known({dir + "10-local.conf", dir + "20-more.conf"});
  s.service.earlier_dropins = Fact<std::map<std::string, std::string>>::known(
      {{dir + "20-more.conf", "[Service]\nNice=-5\n"},
       {dir + "10-local.conf", "[Service]\nExecStart=\nExecStart=/opt/nv/bin/nvidia-persistenced --user nvidia-persistenced "
                               "--no-persistence-mode --nvidia-cfg-path=/opt/nv/lib\n"}});
  std::vector<std::string> assumed;
  FixInputs in = fix_inputs(s, assumed);
  EXPECT_TRUE(assumed.empty()) << assumed.front();
  EXPECT_EQ(in.vendor_unit_text, k_ubuntu_unit);
  ASSERT_EQ(in.earlier_dropins.size(), 2u);
  EXPECT_EQ(in.earlier_dropins[0].first, dir + "10-local.conf");  // systemd's order, not the map's
  std::string d = render_dropin(in.vendor_unit_text, {}, in.earlier_dropins);
  EXPECT_NE(d.find("ExecStart=\nExecStart=/opt/nv/bin/nvidia-persistenced --user nvidia-persistenced "
                   "--nvidia-cfg-path=/opt/nv/lib\n"),
            std::string::npos)
      << d;
  // A drop-in's lines before any section header belong to no section, as systemd reads them ("Assignment
  // outside of section"): not the unit file's last one, whose ExecStart they would otherwise replace.
  d = render_dropin(k_ubuntu_unit, {},
                    {{dir + "10-local.conf", "ExecStart=\nExecStart=/opt/other/nvidia-persistenced --no-persistence-mode\n"}});
  EXPECT_EQ(d.find("/opt/other"), std::string::npos) << d;
  EXPECT_NE(d.find("ExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --verbose\n"),
            std::string::npos)
      << d;
  // Unrecorded (an older gpuwarm's snapshot): the plan says what it assumes.
  s.service.earlier_dropins = Fact<std::map<std::string, std::string>>::unknown("absent");
  in = fix_inputs(s, assumed);
  EXPECT_EQ(in.vendor_unit_text, k_ubuntu_unit);
  EXPECT_TRUE(in.earlier_dropins.empty());
  ASSERT_EQ(assumed.size(), 1u);
  EXPECT_NE(assumed[0].find("the drop-ins applied before gpuwarm's are not recorded (absent)"), std::string::npos)
      << assumed[0];
}

// A drop-in applied after gpuwarm's that puts the flag or StopWhenUnneeded=yes back is refused before anything is
// written, not found after a restart that changed nothing (review-s48 L1).
TEST(FixPlan, ALaterDropInThatWouldUndoTheFixIsRefusedFirst) {
  const std::string dir = "/etc/systemd/system/nvidia-persistenced.service.d/";
  auto plan_with = [&](std::map<std::string, std::string> later) {
    Snapshot s = test::healthy_snapshot();
    s.service.unit_file_state = Fact<std::string>::known("disabled");
    std::vector<std::string> paths;
    for (const auto& [path, text] : later) {
      paths.push_back(path);
    }
    s.service.drop_in_paths = Fact<std::vector<std::string>>::known(paths);
    s.service.later_dropins = Fact<std::map<std::string, std::string>>::known(std::move(later));
    return plan_fix(s, diagnose(s), {k_ubuntu_unit, "", false, true, {}});
  };
  FixPlan p = plan_with({{dir + "override.conf",
                          "[Service]\nExecStart=\nExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode\n"}});
  EXPECT_EQ(p.outcome, FixOutcome::refused);
  EXPECT_EQ(p.exit_code, ExitCode::action_needed);
  EXPECT_TRUE(p.steps.empty());
  EXPECT_EQ(p.reason.rfind(dir + "override.conf sets ExecStart= with --no-persistence-mode, which systemd applies "
                                 "after gpuwarm's",
                           0),
            0u)
      << p.reason;
  p = plan_with({{dir + "override.conf", "[Unit]\nStopWhenUnneeded=yes\n"}});
  EXPECT_EQ(p.outcome, FixOutcome::refused);
  EXPECT_NE(p.reason.find("override.conf sets StopWhenUnneeded=yes"), std::string::npos) << p.reason;
  // The last one applied wins: a later "no" takes the "yes" back.
  p = plan_with({{dir + "override.conf", "[Unit]\nStopWhenUnneeded=yes\n"},
                 {dir + "zz-site.conf", "[Unit]\nStopWhenUnneeded=no\n"}});
  EXPECT_EQ(p.outcome, FixOutcome::act) << p.reason;
  p = plan_with({{dir + "override.conf", "[Service]\nNice=-5\n"}});
  EXPECT_EQ(p.outcome, FixOutcome::act) << p.reason;
}

TEST(FixPlan, LegacyFlagGetsANoteAndRefusalsSayWhy) {
  Snapshot s = test::healthy_snapshot();
  s.daemon.processes.clear();
  s.service.active_state = Fact<std::string>::known("inactive");
  FixPlan p = plan_fix(s, diagnose(s), {k_good_unit, "", false, true, {}});
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_NE(p.notes[0].find("gpuwarm never runs `nvidia-smi -pm`"), std::string::npos);
  EXPECT_EQ(p.notes[0].rfind("Persistence is currently on only through the legacy flag", 0), 0u) << p.notes[0];
  // With one GPU off, persistence is not "on": only the GPUs that read Enabled are.
  s.nvml.gpus[0].persistence = Fact<bool>::known(false);
  p = plan_fix(s, diagnose(s), {k_good_unit, "", false, true, {}});
  ASSERT_EQ(p.notes.size(), 1u);
  EXPECT_EQ(p.notes[0].rfind("Where persistence reads Enabled, it is on only through the legacy flag", 0), 0u)
      << p.notes[0];

  // On a GPU Operator node the driver pod runs the daemon: fix writes no host unit for it.
  Snapshot op = test::healthy_snapshot();
  op.daemon.processes.clear();
  op.nvml.gpus[0].persistence = Fact<bool>::known(false);
  op.service.load_state = Fact<std::string>::known("not-found");
  op.service.active_state = Fact<std::string>::known("inactive");
  op.daemon.binary = Fact<std::string>::known("/run/nvidia/driver/usr/bin/nvidia-persistenced");
  FixPlan operator_plan = plan_fix(op, diagnose(op), {});
  EXPECT_EQ(operator_plan.outcome, FixOutcome::refused);
  EXPECT_TRUE(operator_plan.steps.empty());
  EXPECT_NE(operator_plan.reason.find("GPU Operator's driver container"), std::string::npos) << operator_plan.reason;

  Snapshot r = test::healthy_snapshot();
  r.nvml.init_code = Fact<int>::known(18);
  FixPlan refused = plan_fix(r, diagnose(r), {});
  EXPECT_EQ(refused.exit_code, ExitCode::reboot_pending);
  EXPECT_NE(refused.reason.find("Reboot pending"), std::string::npos) << refused.reason;
}

}  // namespace
}  // namespace gpuwarm

namespace gpuwarm {
namespace {

// What goes into ExecStart= is quoted the systemd way: a path with a blank,
// a specifier (%) or a variable ($) cannot split the command or expand.
TEST(FixPlan, ExecStartIsQuotedTheSystemdWay) {
  Snapshot s = test::healthy_snapshot();
  s.daemon.processes.clear();
  s.service.load_state = Fact<std::string>::known("not-found");
  s.daemon.binary = Fact<std::string>::known("/opt/odd dir/%n$HOME\"x\"/nvidia-persistenced");
  FixInputs in;
  FixPlan p = plan_fix(s, diagnose(s), in);
  ASSERT_FALSE(p.steps.empty());
  const std::string& unit = p.steps.front().content;
  EXPECT_NE(unit.find("ExecStart=\"/opt/odd dir/%%n$$HOME\\\"x\\\"/nvidia-persistenced\""), std::string::npos)
      << unit;
}

}  // namespace
}  // namespace gpuwarm

// libFuzzer targets for every parser of untrusted input, one binary: the
// target is chosen by GPUWARM_FUZZ_TARGET (scripts/fuzz.sh runs each in turn).
// Each takes any bytes up to -max_len (1 MiB in scripts/fuzz.sh) and a
// per-input time limit, so quadratic behaviour shows as a timeout.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "cli/node_lock.h"
#include "core/elf.h"
#include "core/json_strings.h"
#include "core/strings.h"
#include "exporter/http_server.h"
#include "fix/plan.h"
#include "fleet/fleet.h"
#include "guard/guard.h"
#include "lint/lint.h"
#include "lint/units.h"
#include "nvml/nvml_library.h"
#include "output/metrics.h"
#include "output/style.h"
#include "probe/probe.h"
#include "rules/rule.h"
#include "snapshot/snapshot_json.h"
#include "sysfs/daemon.h"
#include "sysfs/driver.h"
#include "sysfs/kernel_log.h"
#include "sysfs/processes.h"
#include "systemd/unit_file.h"
#include "verify/verify.h"
#include "watch/watch.h"

namespace {

using namespace gpuwarm;

std::string g_target;

void kernel_log(std::string_view text) {
  KernelLogFacts facts = scan_kernel_log(text);
  for (const auto& m : facts.mismatches) {
    if (m.client_version.size() > text.size() || m.kernel_version.size() > text.size()) {
      __builtin_trap();
    }
    (void)m.refused_the_daemon();
  }
  // The guard over whatever the log held, on a node whose halves agree: a code in ExecCondition's skip range
  // (never 255), and one line for the journal.
  guard::GuardFacts node;
  node.driver.module_loaded = true;
  node.driver.kernel_version = Fact<std::string>::known("580.159.04");
  node.user_space = {{"libnvidia-ml", "580.159.04", ""}, {"libnvidia-cfg", "580.159.04", ""}};
  node.driver.device_nodes = {{"/dev/nvidiactl", true, 0666}, {"/dev/nvidia0", true, 0666}};
  node.loadable.looked = true;
  node.loadable.copies = {{"/usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.1", "580.159.04"},
                          {"/usr/local/lib/libnvidia-cfg.so.1", "590.10.01"}};
  node.kernel_log = facts;
  const auto decision = guard::evaluate(node);
  if (static_cast<int>(decision.code) < 0 || static_cast<int>(decision.code) > 254 ||
      decision.line.find('\n') != std::string::npos) {
    __builtin_trap();
  }
  // The same bytes as one /dev/kmsg record: a sequence number only where "prio,seq," says one.
  if (auto seq = kmsg_sequence(text); seq && text.find(',') == std::string_view::npos) {
    __builtin_trap();
  }
}

// What tells the guard where the loader looks: /etc/ld.so.cache, and an executable's RUNPATH. Refused or
// read, never past their end.
void loader(std::string_view bytes) {
  const ElfSearchPaths asked = elf_search_paths(bytes, "/origin");
  for (const auto& folder : asked.folders) {
    if (folder.empty() || folder.front() != '/' || folder.find('$') != std::string::npos) {
      __builtin_trap();
    }
  }
  auto paths = nvml::ld_cache_paths(bytes, {"libnvidia-cfg.so.1", "libnvidia-ml.so.1", "libc.so.6"});
  if (paths) {
    for (const auto& p : *paths) {
      if (p.empty() || p.front() != '/' || p.size() > bytes.size()) {
        __builtin_trap();
      }
    }
  }
}

void proc_driver(std::string_view text) {
  std::string s(text);
  (void)parse_proc_driver_version(s);
  (void)parse_gpu_information("0000:06:00.0", s);
  (void)parse_runtime_d3(s);
  // Versions read from the two halves of the driver: an order, whatever the bytes (DRV003/DRV006, the guard).
  const std::string_view a = text.substr(0, text.find('\n'));
  const std::string_view b = text.substr(std::min(text.size(), a.size() + 1));
  const auto ab = compare_driver_versions(a, b);
  const auto ba = compare_driver_versions(b, a);
  if (ab.has_value() != ba.has_value() ||
      (ab && ((*ab > 0) != (*ba < 0) || (*ab == 0) != (*ba == 0) || compare_driver_versions(a, a) != 0))) {
    __builtin_trap();
  }
  // The same bytes as /proc/bus/pci/devices and as /proc/self/mountinfo.
  for (const auto& function : parse_nvidia_pci_functions(s)) {
    if (function.function.size() != 7) {  // "bb:dd.f"
      __builtin_trap();
    }
  }
  (void)hidepid_hides_others(s, ProcViewer{1000, {1000, 27}});
  // And as /proc/PID/cgroup: the path is part of the text, never more.
  if (systemd_cgroup_of(s).size() > s.size()) {
    __builtin_trap();
  }
}

void unit_file(std::string_view text) {
  auto settings = parse_unit_file(text);
  (void)unit_exec_start(settings);
  (void)unit_value(settings, "Service", "ExecStart");
  // The drop-in copies ExecStart= as written, less one word: its scanner and the splitter must agree on any text.
  (void)render_dropin(std::string(text), {});
}

nlohmann::json parse_json(std::string_view text) {
  return nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
}

void snapshot(std::string_view text) {
  auto j = parse_json(text);
  if (j.is_discarded()) {
    return;
  }
  auto snap = snapshot_from_json(j);
  if (!snap) {
    return;
  }
  Diagnosis d = diagnose(*snap);  // rules over whatever the file claims
  if (render_metrics(*snap, d, MetricsRun{"0", "x", 0, {}, {}, {}}).empty()) {  // and the metrics over both
    __builtin_trap();
  }
  if (d.verdict.code.empty()) {
    __builtin_trap();
  }
}

void fuzz_fleet(std::string_view text) {
  static fleet::ReportParser parser;
  const std::size_t padding = fleet::parse_padding();
  std::string padded(text);
  padded.resize(text.size() + padding, '\0');
  std::vector<fleet::NodeReport> reports;
  for (const auto& span : fleet::split_documents(text)) {
    auto r = parser.parse(std::string_view(padded).substr(span.offset, span.length));
    if (r) {
      reports.push_back(std::move(*r));
    }
  }
  // Read whole too, as a file is first (one report in any layout, or an array of them).
  if (auto whole = parser.parse_whole(std::string_view(padded).substr(0, text.size()))) {
    for (auto& r : *whole) {
      if (r) {
        reports.push_back(std::move(*r));
      }
    }
  }
  // And rendered, as fleet-summary prints it: the medians per GPU count run over whatever the reports held.
  const fleet::FleetSummary summary = fleet::summarize(std::move(reports), {});
  (void)fleet::render_text(summary, Style(false));
  (void)fleet::render_json(summary);
}

// What gpuwarm prints from a saved report reaches a terminal: no control byte but the line break.
void expect_terminal_safe(const std::string& out) {
  for (unsigned char c : out) {
    if ((c < 0x20 && c != '\n') || c == 0x7f) {
      std::fprintf(stderr, "control byte 0x%02x in rendered text\n", c);
      std::abort();
    }
  }
}

// Read as the command reads it (streamed, every string escaped), and the same document whole as the tests read it:
// both take it or both refuse it, with the same samples.
void watch_replay(std::string_view text) {
  auto run = watch::run_from_text(text);
  auto j = parse_json(text);
  if (!j.is_discarded()) {
    escape_strings(j);
    auto whole = j.is_object() && j.contains("error") ? Result<watch::WatchRun>(fail("saved failure"))
                                                        : watch::run_from_json(j);
    if (static_cast<bool>(run) != static_cast<bool>(whole) ||
        (run && run->samples.size() != whole->samples.size())) {
      std::abort();
    }
  }
  if (!run) {
    return;
  }
  auto summary = watch::summarize(*run);
  expect_terminal_safe(watch::render_text(*run, summary, false));
}

void probe_baseline(std::string_view text) {
  auto j = parse_json(text);
  if (j.is_discarded()) {
    return;
  }
  escape_strings(j);
  auto run = probe_from_json(j);
  if (run) {
    expect_terminal_safe(render_probe_text(*run));
    expect_terminal_safe(render_compare_text(*run, *run));
  }
}

// --listen's grammar: any text either parses into a valid address or says why, never crashes.
void fuzz_listen(std::string_view text) {
  auto a = gpuwarm::parse_listen_address(text);
  if (a && (a->length == 0 || a->text.empty())) {
    std::abort();
  }
  if (!a && a.error().message.empty()) {
    std::abort();
  }
}

void fuzz_lint(std::string_view text) {
  // A variable defined as itself: resolution must stop. Paths that name the unit switch the unit rules on.
  static const lint::Variables vars = {{"pm", {"{{ pm }}", "defaults/main.yml:1"}}, {"PM", {"$PM", "x:1"}}};
  (void)lint::parse_role_variables(text, "defaults/main.yml");
  const auto lines = static_cast<unsigned>(std::count(text.begin(), text.end(), '\n') + 1);
  for (auto kind : {lint::FileKind::shell, lint::FileKind::yaml, lint::FileKind::unit, lint::FileKind::nix,
                    lint::FileKind::dockerfile, lint::FileKind::udev, lint::FileKind::text,
                    lint::FileKind::doc_markdown, lint::FileKind::doc_rst, lint::FileKind::doc_text}) {
    // The last path is a template's: its ERB/Jinja/Go branches are parsed.
    for (std::string_view path :
         {"", "etc/nvidia-persistenced.service.d/x.conf", "templates/nvidia-persistenced.service.erb"}) {
      for (const auto& f : lint::lint_text(text, lint::Source{path, kind, &vars, true})) {
        if (f.line == 0 || f.line > lines || f.column == 0 || f.rule.empty()) {
          __builtin_trap();
        }
      }
    }
  }
  // The layering: the text as a drop-in read before and after itself; every finding stays or is set aside.
  lint::UnitDoc doc = lint::parse_unit(text);
  doc.dropin = true;
  auto findings = lint::lint_text(text, lint::Source{"etc/nvidia-persistenced.service.d/x.conf", lint::FileKind::unit,
                                                     &vars, false});
  const std::size_t found = findings.size();
  lint::LaterFiles later;
  later.dropins = {"later.conf"};
  later.earlier = {"earlier.conf"};
  std::vector<lint::SetAside> aside;
  lint::set_aside_overridden(doc, later, {{"later.conf", doc}}, {{"earlier.conf", doc}}, findings, aside);
  if (findings.size() + aside.size() > found) {
    __builtin_trap();
  }
  // And as a path (a unit's place, its drop-in folders).
  const std::string_view path = text.substr(0, 4096);
  if (auto place = lint::unit_place(path)) {
    (void)lint::dropin_folders(place->unit);
  }
}

// /proc/locks, which under --root is a tree's file anyone may have written: any text is read without fault, and
// a held exclusive flock on a line of its own is always found after it (a cut last line ends where it ends).
void proc_locks(std::string_view text) {
  (void)flock_held_exclusively(text, 0x0, 0x19, 4242);
  std::string with(text);
  with += "\n7: FLOCK  ADVISORY  WRITE 99 00:19:4242 0 EOF\n";
  if (!flock_held_exclusively(with, 0x0, 0x19, 4242)) {
    __builtin_trap();
  }
}

// `dcgmi diag --json`'s output, whatever it holds: judged without fault, and never a pass where no result reads
// Pass, on a non-zero exit, or on output cut short.
void dcgm(std::string_view text) {
  const std::string output(text);
  if (judge_dcgm_diag(1, 0, output, false).passed && output.find("Pass") == std::string::npos) {
    __builtin_trap();
  }
  if (judge_dcgm_diag(1, 1, output, false).passed || judge_dcgm_diag(1, 0, output, true).passed) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* t = std::getenv("GPUWARM_FUZZ_TARGET");
  g_target = t != nullptr ? t : "";
  if (g_target.empty()) {
    std::fprintf(stderr, "set GPUWARM_FUZZ_TARGET to one of: listen kernel_log proc_driver unit_file snapshot fleet "
                         "watch_replay probe_baseline lint loader proc_locks dcgm\n");
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (g_target == "kernel_log") kernel_log(text);
  else if (g_target == "proc_driver") proc_driver(text);
  else if (g_target == "unit_file") unit_file(text);
  else if (g_target == "snapshot") snapshot(text);
  else if (g_target == "fleet") fuzz_fleet(text);
  else if (g_target == "watch_replay") watch_replay(text);
  else if (g_target == "probe_baseline") probe_baseline(text);
  else if (g_target == "lint") fuzz_lint(text);
  else if (g_target == "listen") fuzz_listen(text);
  else if (g_target == "loader") loader(text);
  else if (g_target == "proc_locks") proc_locks(text);
  else if (g_target == "dcgm") dcgm(text);
  else __builtin_trap();
  return 0;
}

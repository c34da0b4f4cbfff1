#include "probe/probe.h"

#include <fmt/format.h>

#include "core/report_kind.h"
#include "output/table.h"

namespace gpuwarm {

namespace {
const char* const k_stage_order[] = {"load_libcuda", "nvml_init", "cu_init", "device_get",
                                     "ctx_retain",   "alloc_sync", "ctx_release"};

const cuda::Stage* find_stage(const cuda::ColdStart& c, const std::string& name) {
  for (const auto& s : c.stages) {
    if (s.name == name) {
      return &s;
    }
  }
  return nullptr;
}

const GpuProbe* match(const ProbeRun& run, const GpuProbe& g) {
  for (const auto& other : run.gpus) {
    if (!g.uuid.empty() && other.uuid == g.uuid) {
      return &other;
    }
  }
  for (const auto& other : run.gpus) {
    if (!g.pci_bus_id.empty() && other.pci_bus_id == g.pci_bus_id) {
      return &other;
    }
  }
  return nullptr;
}

std::string failure_text(const GpuProbe& g) {
  if (g.timed_out) {
    return "timed out";
  }
  if (!g.child_error.empty()) {
    return g.child_error;
  }
  return g.result.failed_stage + ": " + g.result.error;
}
}  // namespace

bool probe_ok(const GpuProbe& g) { return !g.timed_out && g.child_error.empty() && g.result.failed_stage.empty(); }

double total_ms(const cuda::ColdStart& c) {
  double t = 0;
  for (const auto& s : c.stages) {
    t += s.ms;
  }
  return t;
}

nlohmann::json probe_to_json(const ProbeRun& run) {
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& g : run.gpus) {
    nlohmann::json j = cuda::to_json(g.result);
    j["index"] = g.index;
    j["uuid"] = g.uuid;
    j["pci_bus_id"] = g.pci_bus_id;
    j["timed_out"] = g.timed_out;
    j["child_error"] = g.child_error;
    j["wall_ms"] = g.wall_ms;
    j["total_ms"] = total_ms(g.result);
    j["ok"] = probe_ok(g);
    gpus.push_back(std::move(j));
  }
  return {{"schema_version", k_probe_schema_version}, {"kind", "gpuwarm-probe"}, {"hostname", run.hostname},
          {"taken_at", run.taken_at}, {"wall_ms", run.wall_ms}, {"sequential", run.sequential}, {"gpus", gpus}};
}

Result<ProbeRun> probe_from_json(const nlohmann::json& j) {
  if (!j.is_object()) {
    return fail("not a gpuwarm probe result (save one with `gpuwarm probe --save`)");
  }
  if (j.contains("kind") && j.at("kind").is_string() && j.at("kind") != "gpuwarm-probe") {
    return fail("this is " + describe_report_kind(j.at("kind").get<std::string>()) +
                ", not a probe result (save one with `gpuwarm probe --save`)");
  }
  if (!j.contains("kind") || !j.at("kind").is_string() || j.at("kind") != "gpuwarm-probe") {
    return fail("not a gpuwarm probe result (save one with `gpuwarm probe --save`)");
  }
  if (!j.contains("schema_version") || !j.at("schema_version").is_number_integer() ||
      j.at("schema_version").get<int>() != k_probe_schema_version) {
    return fail("probe schema_version " + j.value("schema_version", nlohmann::json()).dump() + " is not supported");
  }
  try {
    ProbeRun run;
    run.hostname = j.value("hostname", "");
    run.taken_at = j.value("taken_at", "");
    run.wall_ms = j.value("wall_ms", 0.0);
    run.sequential = j.value("sequential", false);
    for (const auto& g : j.at("gpus")) {
      GpuProbe p;
      p.index = g.at("index").get<unsigned>();
      p.result = cuda::cold_start_from_json(g);
      p.uuid = g.value("uuid", "");
      p.pci_bus_id = g.value("pci_bus_id", "");
      p.timed_out = g.value("timed_out", false);
      p.child_error = g.value("child_error", "");
      p.wall_ms = g.value("wall_ms", 0.0);
      run.gpus.push_back(std::move(p));
    }
    return run;
  } catch (const nlohmann::json::exception& e) {
    return fail(std::string("malformed probe result: ") + e.what());
  }
}

std::string render_probe_text(const ProbeRun& run) {
  std::vector<std::string> header = {"GPU", "UUID"};
  for (const char* s : k_stage_order) {
    header.emplace_back(s);
  }
  header.emplace_back("TOTAL ms");
  TextTable t(header);
  std::string failures;
  for (const auto& g : run.gpus) {
    std::vector<std::string> row = {std::to_string(g.index), g.uuid.substr(0, 12)};
    for (const char* name : k_stage_order) {
      const cuda::Stage* s = find_stage(g.result, name);
      row.push_back(s != nullptr ? fmt::format("{:.1f}", s->ms) : "-");
    }
    row.push_back(probe_ok(g) ? fmt::format("{:.1f}", total_ms(g.result)) : "FAILED");
    t.add_row(row);
    if (!probe_ok(g)) {
      failures += fmt::format("GPU {}: {}\n", g.index, failure_text(g));
    }
  }
  return fmt::format("gpuwarm probe · {} GPU(s) {}, {:.0f} ms wall\n\n", run.gpus.size(),
                     run.sequential ? "one at a time" : "in parallel", run.wall_ms) +
         t.render() + (failures.empty() ? "" : "\n" + failures);
}

nlohmann::json compare_json(const ProbeRun& before, const ProbeRun& after) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& g : after.gpus) {
    const GpuProbe* b = match(before, g);
    nlohmann::json stages = nlohmann::json::array();
    for (const char* name : k_stage_order) {
      const cuda::Stage* now = find_stage(g.result, name);
      const cuda::Stage* then = b != nullptr ? find_stage(b->result, name) : nullptr;
      stages.push_back({{"name", name},
                        {"before_ms", then != nullptr ? nlohmann::json(then->ms) : nlohmann::json(nullptr)},
                        {"after_ms", now != nullptr ? nlohmann::json(now->ms) : nlohmann::json(nullptr)}});
    }
    out.push_back({{"index", g.index}, {"uuid", g.uuid}, {"in_baseline", b != nullptr}, {"stages", stages},
                   {"before_total_ms", b != nullptr && probe_ok(*b) ? nlohmann::json(total_ms(b->result))
                                                                    : nlohmann::json(nullptr)},
                   {"after_total_ms", probe_ok(g) ? nlohmann::json(total_ms(g.result)) : nlohmann::json(nullptr)}});
  }
  return out;
}

std::string render_compare_text(const ProbeRun& before, const ProbeRun& after) {
  std::string out = fmt::format("Before: {} {}   After: {} {}\n\n", before.hostname, before.taken_at,
                                after.hostname, after.taken_at);
  for (const auto& g : after.gpus) {
    const GpuProbe* b = match(before, g);
    out += fmt::format("GPU {} ({})\n", g.index, g.uuid);
    if (b == nullptr) {
      out += "  not in the baseline\n\n";
      continue;
    }
    TextTable t({"  stage", "before ms", "after ms", "change"});
    auto add = [&t](const std::string& name, const cuda::Stage* then, const cuda::Stage* now) {
      std::string change = "-";
      if (then != nullptr && now != nullptr && then->ms > 0) {
        change = fmt::format("{:+.0f}%", (now->ms - then->ms) / then->ms * 100.0);
      }
      t.add_row({"  " + name, then != nullptr ? fmt::format("{:.1f}", then->ms) : "-",
                 now != nullptr ? fmt::format("{:.1f}", now->ms) : "-", change});
    };
    for (const char* name : k_stage_order) {
      add(name, find_stage(b->result, name), find_stage(g.result, name));
    }
    cuda::Stage then_total{"total", total_ms(b->result)};
    cuda::Stage now_total{"total", total_ms(g.result)};
    add("TOTAL", probe_ok(*b) ? &then_total : nullptr, probe_ok(g) ? &now_total : nullptr);
    out += t.render() + "\n";
  }
  return out;
}

}  // namespace gpuwarm

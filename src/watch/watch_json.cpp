// JSON of a watch run: the samples as taken and the summary rendered from
// them. The samples round-trip (run_from_json), so a run recorded on one node
// is summarized the same anywhere (`gpuwarm watch --replay FILE`).

#include <algorithm>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>

#include <fmt/format.h>

#include "core/json_number.h"
#include "core/json_strings.h"
#include "core/report_kind.h"
#include "snapshot/clock_reasons.h"
#include "watch/watch.h"

namespace gpuwarm::watch {

namespace {

using nlohmann::json;

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

// A number as T, or a json type_error: never a float cast to an integer type
// it does not fit (undefined behaviour), whatever a replayed file holds.
template <class T>
T checked(const json& v, const char* what) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return whole_number<T>(v, what);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) {
      throw json::type_error::create(302, std::string(what) + " is not a number", &v);
    }
    return v.get<T>();
  } else {
    return v.get<T>();
  }
}

template <class T>
std::optional<T> opt_from(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) {
    return std::nullopt;
  }
  return checked<T>(j[key], key);
}

json stats_json(const std::optional<Stats>& s) {
  if (!s) {
    return nullptr;
  }
  return {{"min", s->min}, {"median", s->median}, {"max", s->max}, {"count", s->count}};
}

json identity_json(const nvml::GpuIdentity& id) {
  return {{"index", id.index},
          {"uuid", id.uuid},
          {"name", id.name},
          {"max_sm_mhz", opt(id.max_sm_mhz)},
          {"default_app_sm_mhz", opt(id.default_app_sm_mhz)},
          {"default_app_mem_mhz", opt(id.default_app_mem_mhz)},
          {"default_power_limit_mw", opt(id.default_power_limit_mw)}};
}

json reading_json(const nvml::GpuReading& r) {
  json j = {{"index", r.index}};
  if (!r.error.empty()) {
    j["error"] = r.error;
    return j;
  }
  j["attach_ms"] = r.attach_ms >= 0 ? json(r.attach_ms) : json(nullptr);
  if (!r.fault.empty()) {
    j["fault"] = r.fault;
  }
  j["sm_mhz"] = opt(r.sm_mhz);
  j["mem_mhz"] = opt(r.mem_mhz);
  j["pstate"] = opt(r.pstate);
  j["event_reasons"] = opt(r.event_reasons);
  j["app_sm_mhz"] = opt(r.app_sm_mhz);
  j["app_mem_mhz"] = opt(r.app_mem_mhz);
  j["power_limit_mw"] = opt(r.power_limit_mw);
  j["persistence"] = opt(r.persistence);
  return j;
}

json gpu_summary_json(const GpuSummary& g) {
  json reasons = json::array();
  for (const auto& r : g.reason_time) {
    reasons.push_back({{"reason", r.reason}, {"seconds", r.seconds}});
  }
  json events = json::array();
  for (const auto& e : g.deinit_events) {
    events.push_back({{"t_s", e.t_s}, {"kind", e.kind}, {"detail", e.detail}});
  }
  json causes = json::array();
  for (Cause c : g.causes) {
    causes.push_back(cause_code(c));
  }
  return {{"index", g.id.index},
          {"uuid", g.id.uuid},
          {"samples", g.samples},
          {"failed_samples", g.failed},
          {"last_error", g.last_error},
          {"sm_mhz", stats_json(g.sm)},
          {"mem_mhz", stats_json(g.mem)},
          {"sm_mhz_idle", stats_json(g.sm_idle)},
          {"sm_mhz_load", stats_json(g.sm_load)},
          {"settle_s", opt(g.settle_s)},
          {"pstates", g.pstates},
          {"reason_seconds", reasons},
          {"attach_ms", stats_json(g.attach_ms)},
          {"deinit_events", events},
          {"persistence", opt(g.persistence)},
          {"attribution", cause_code(g.causes.front())},
          {"causes", causes},
          {"evidence", g.evidence}};
}

json sample_json(const Sample& s) {
  json readings = json::array();
  for (const auto& r : s.gpus) {
    readings.push_back(reading_json(r));
  }
  json j = {{"t_s", s.t_s}, {"phase", phase_name(s.phase)},
            {"init_ms", s.init_ms >= 0 ? json(s.init_ms) : json(nullptr)}, {"gpus", readings}};
  if (!s.error.empty()) {
    j["error"] = s.error;
  }
  return j;
}

// Everything but the samples.
json run_json(const WatchRun& run, const WatchSummary& summary) {
  json gpus = json::array();
  for (const auto& id : run.gpus) {
    gpus.push_back(identity_json(id));
  }
  json load = nullptr;
  if (run.load) {
    load = {{"requested_s", run.load->requested_s},
            {"start_s", run.load->start_s >= 0 ? json(run.load->start_s) : json(nullptr)},
            {"end_s", run.load->end_s >= 0 ? json(run.load->end_s) : json(nullptr)},
            {"launches", run.load->launches},
            {"launches_uncounted", run.load->launches_uncounted},
            {"error", run.load->error},
            {"ended_early", json::array()}};
    load["started"] = json::array();
    for (const auto& st : run.load->started) {
      load["started"].push_back({{"gpu", st.gpu}, {"at_s", st.at_s}});
    }
    for (const auto& e : run.load->ended_early) {
      load["ended_early"].push_back({{"gpu", e.gpu}, {"at_s", e.at_s}, {"ran", e.ran}, {"error", e.why}});
    }
  }
  json per_gpu = json::array();
  for (const auto& g : summary.gpus) {
    per_gpu.push_back(gpu_summary_json(g));
  }
  return {{"schema_version", k_schema_version},
          {"kind", "gpuwarm-watch"},
          {"hostname", run.hostname},
          {"taken_at", run.taken_at},
          {"mode", run.mode == nvml::SampleMode::held ? "held" : "detached"},
          {"interval_s", run.interval_s},
          {"duration_s", run.duration_s},
          {"cold_attach_ms", run.cold_attach_ms},
          {"load", load},
          {"nvml_stopped", run.nvml_stopped.empty() ? json(nullptr) : json(run.nvml_stopped)},
          {"sample_cap", run.sample_cap == 0 ? json(nullptr) : json(run.sample_cap)},
          {"gpus", gpus},
          {"summary",
           {{"attribution", cause_code(summary.cause)},
            {"title", cause_title(summary.cause)},
            {"next_step", summary.next_step},
            {"exit_code", to_int(summary.exit_code)},
            {"init_ms", stats_json(summary.init_ms)},
            {"init_failures", summary.init_failures},
            {"notes", summary.notes},
            {"gpus", per_gpu}}}};
}

}  // namespace

json to_json(const WatchRun& run, const WatchSummary& summary) {
  json j = run_json(run, summary);
  json samples = json::array();
  for (const auto& s : run.samples) {
    samples.push_back(sample_json(s));
  }
  j["samples"] = std::move(samples);
  return j;
}

void write_json(std::ostream& out, const WatchRun& run, const WatchSummary& summary, int exit_code) {
  json head = run_json(run, summary);
  head["exit_code"] = exit_code;
  head["samples"] = nullptr;
  const std::string text = head.dump(2, ' ', false, json::error_handler_t::replace);
  // The keys are sorted and nested ones indented further, and a string's new lines are escaped: this is the
  // top-level key, once.
  const std::string marker = "\n  \"samples\": null";
  const auto at = text.find(marker);
  out << text.substr(0, at) << "\n  \"samples\": [";
  for (std::size_t i = 0; i < run.samples.size(); ++i) {
    out << (i == 0 ? "\n    " : ",\n    ")
        << sample_json(run.samples[i]).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  out << (run.samples.empty() ? "]" : "\n  ]") << text.substr(at + marker.size()) << "\n";
}

namespace {

// One element of "samples"; a json::exception for a malformed one.
Sample sample_from_json(const json& s) {
  Sample sample;
  sample.t_s = checked<double>(s.at("t_s"), "t_s");
  std::string phase = s.value("phase", "idle");
  sample.phase = phase == "load"            ? Phase::load
                 : phase == "load-starting" ? Phase::load_starting
                 : phase == "after-load"    ? Phase::after_load
                                            : Phase::idle;
  sample.init_ms = opt_from<double>(s, "init_ms").value_or(-1);
  sample.error = s.value("error", "");
  for (const auto& g : s.at("gpus")) {
    nvml::GpuReading r;
    r.index = checked<unsigned>(g.at("index"), "index");
    r.error = g.value("error", "");
    r.fault = g.value("fault", "");
    r.attach_ms = opt_from<double>(g, "attach_ms").value_or(-1);
    r.sm_mhz = opt_from<unsigned>(g, "sm_mhz");
    r.mem_mhz = opt_from<unsigned>(g, "mem_mhz");
    r.pstate = opt_from<unsigned>(g, "pstate");
    r.event_reasons = opt_from<std::uint64_t>(g, "event_reasons");
    r.app_sm_mhz = opt_from<unsigned>(g, "app_sm_mhz");
    r.app_mem_mhz = opt_from<unsigned>(g, "app_mem_mhz");
    r.power_limit_mw = opt_from<unsigned>(g, "power_limit_mw");
    r.persistence = opt_from<bool>(g, "persistence");
    sample.gpus.push_back(std::move(r));
  }
  return sample;
}

// Everything of a saved run but its samples.
Result<WatchRun> run_header_from_json(const json& j) {
  try {
    // "watch" is what gpuwarm 0.1 wrote.
    const std::string kind = j.is_object() && j.contains("kind") && j.at("kind").is_string() ? j.at("kind").get<std::string>() : "";
    if (kind != "gpuwarm-watch" && kind != "watch") {
      return fail(kind.empty() ? std::string("not a gpuwarm watch run (no \"kind\")")
                               : "this is " + describe_report_kind(kind) + ", not a gpuwarm watch run (`gpuwarm watch --json`)");
    }
    if (!j.at("schema_version").is_number_integer() || j.at("schema_version").get<int>() != k_schema_version) {
      return fail("unsupported watch schema_version " + describe_value(j.at("schema_version")));
    }
    WatchRun run;
    run.hostname = j.value("hostname", "");
    run.taken_at = j.value("taken_at", "");
    run.mode = j.at("mode").get<std::string>() == "held" ? nvml::SampleMode::held : nvml::SampleMode::detached;
    run.interval_s = checked<double>(j.at("interval_s"), "interval_s");
    run.duration_s = j.value("duration_s", 0.0);
    run.cold_attach_ms = j.value("cold_attach_ms", k_default_cold_attach_ms);
    if (j.contains("load") && !j["load"].is_null()) {
      const json& l = j["load"];
      LoadWindow w;
      w.requested_s = l.value("requested_s", 0.0);
      w.start_s = opt_from<double>(l, "start_s").value_or(-1);
      w.end_s = opt_from<double>(l, "end_s").value_or(-1);
      w.launches = opt_from<unsigned long long>(l, "launches").value_or(0);
      if (l.contains("launches_uncounted") && l.at("launches_uncounted").is_array()) {
        for (const auto& g : l.at("launches_uncounted")) {
          w.launches_uncounted.push_back(checked<unsigned>(g, "launches_uncounted"));
        }
      }
      w.error = l.value("error", "");
      if (l.contains("started") && l.at("started").is_array()) {
        for (const auto& st : l.at("started")) {
          w.started.push_back({checked<unsigned>(st.at("gpu"), "gpu"), checked<double>(st.at("at_s"), "at_s")});
        }
      }
      if (l.contains("ended_early") && l.at("ended_early").is_array()) {  // absent in runs saved by earlier builds
        for (const auto& e : l.at("ended_early")) {
          w.ended_early.push_back({checked<unsigned>(e.at("gpu"), "gpu"), checked<double>(e.at("at_s"), "at_s"),
                                   e.value("ran", false), e.value("error", "")});
        }
      }
      run.load = w;
    }
    if (j.contains("nvml_stopped") && j.at("nvml_stopped").is_string()) {
      run.nvml_stopped = j.at("nvml_stopped").get<std::string>();
    }
    if (j.contains("sample_cap") && !j.at("sample_cap").is_null()) {
      run.sample_cap = checked<std::size_t>(j.at("sample_cap"), "sample_cap");
    }
    for (const auto& g : j.at("gpus")) {
      nvml::GpuIdentity id;
      id.index = checked<unsigned>(g.at("index"), "index");
      id.uuid = g.value("uuid", "");
      id.name = g.value("name", "");
      id.max_sm_mhz = opt_from<unsigned>(g, "max_sm_mhz");
      id.default_app_sm_mhz = opt_from<unsigned>(g, "default_app_sm_mhz");
      id.default_app_mem_mhz = opt_from<unsigned>(g, "default_app_mem_mhz");
      id.default_power_limit_mw = opt_from<unsigned>(g, "default_power_limit_mw");
      run.gpus.push_back(std::move(id));
    }
    if (run.load) {  // an end or a start is a GPU's: one not in the run is no reading of this run
      auto stranger = [&run](const char* list, unsigned gpu) -> std::string {
        const bool known = std::any_of(run.gpus.begin(), run.gpus.end(), [gpu](const auto& g) { return g.index == gpu; });
        return known ? "" : fmt::format("malformed watch run: load.{} names GPU {}, not in \"gpus\"", list, gpu);
      };
      for (const auto& e : run.load->ended_early) {
        if (auto why = stranger("ended_early", e.gpu); !why.empty()) {
          return fail(why);
        }
      }
      for (const auto& st : run.load->started) {
        if (auto why = stranger("started", st.gpu); !why.empty()) {
          return fail(why);
        }
      }
    }
    if (!j.contains("samples") || !j.at("samples").is_array()) {
      return fail("malformed watch run: \"samples\" is not a list");
    }
    return run;
  } catch (const json::exception& e) {
    return fail(std::string("malformed watch run: ") + e.what());
  }
}

}  // namespace

Result<WatchRun> run_from_json(const json& j) {
  auto run = run_header_from_json(j);
  if (!run) {
    return run;
  }
  try {
    for (const auto& s : j.at("samples")) {
      run->samples.push_back(sample_from_json(s));
    }
  } catch (const json::exception& e) {
    return fail(std::string("malformed watch run: ") + e.what());
  }
  return run;
}

namespace {

// A JSON value built from SAX events: each new value goes where the stack of open containers says. Iterative, so
// nesting a million deep costs memory, not stack.
class DomBuilder {
 public:
  json take() { return std::move(m_root); }
  void value(json v) { add(std::move(v)); }
  void open(json empty) { m_open.push_back(add(std::move(empty))); }
  void close() { m_open.pop_back(); }
  void key(std::string k) { m_key = std::move(k); }

 private:
  json* add(json v) {
    if (m_open.empty()) {
      m_root = std::move(v);
      return &m_root;
    }
    json& parent = *m_open.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();  // valid while it is open: nothing else is added to `parent` until it closes
    }
    json& slot = parent[m_key];  // a repeated key: the last value stands, as nlohmann's own parser does
    slot = std::move(v);
    return &slot;
  }
  json m_root;
  std::vector<json*> m_open;  // the containers open, outermost first (pointers into m_root)
  std::string m_key;
};

// The events of a saved run: everything but the elements of the top-level "samples" goes into `head` (with
// "samples" an empty list); each element is built alone, escaped, converted and dropped as soon as it ends.
// nlohmann's callback parser would do the same, but scans a container's elements at every object's end: a
// hostile file of wide objects took minutes.
class ReplaySax : public nlohmann::json_sax<json> {
 public:
  json head() { return m_head.take(); }
  std::vector<Sample>& samples() { return m_samples; }
  const std::string& sample_error() const { return m_sample_error; }

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
  bool number_float(number_float_t v, const string_t& /*text*/) override { return value(json(v)); }
  bool string(string_t& v) override { return value(json(std::move(v))); }
  bool binary(binary_t& v) override { return value(json::binary(std::move(v))); }
  bool key(string_t& k) override {
    if (m_depth == 1) {
      m_next_is_samples = k == "samples";
    }
    (in_element() ? m_element : m_head).key(std::move(k));
    return true;
  }
  bool start_object(std::size_t /*elements*/) override { return open(json::object()); }
  bool start_array(std::size_t /*elements*/) override { return open(json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/, const json::exception& /*e*/) override {
    return false;
  }

 private:
  // Depth counts the containers open: the document 1, "samples" 2, an element of it 3 and more.
  bool in_element() const { return m_in_samples && m_depth >= 3; }

  bool value(json v) {
    if (m_in_samples && m_depth == 2) {  // an element that is no container: converted (and refused) as one
      convert(std::move(v));
    } else {
      (in_element() ? m_element : m_head).value(std::move(v));
    }
    m_next_is_samples = false;
    return true;
  }
  bool open(json empty) {
    if (m_depth == 1 && m_next_is_samples && empty.is_array()) {
      m_in_samples = true;  // a repeated "samples": the last stands, as for any key
      m_samples.clear();
      m_sample_error.clear();
    }
    m_next_is_samples = false;
    ++m_depth;
    (in_element() ? m_element : m_head).open(std::move(empty));
    return true;
  }
  bool close() {
    if (in_element()) {
      m_element.close();
      if (m_depth == 3) {
        convert(m_element.take());
      }
    } else {
      m_head.close();
      if (m_in_samples && m_depth == 2) {
        m_in_samples = false;
      }
    }
    --m_depth;
    return true;
  }
  void convert(json element) {
    if (!m_sample_error.empty()) {
      return;  // the first malformed sample is the one named
    }
    try {
      escape_strings(element);
      m_samples.push_back(sample_from_json(element));
    } catch (const json::exception& e) {
      m_sample_error = std::string("malformed watch run: ") + e.what();
    }
  }

  DomBuilder m_head;
  DomBuilder m_element;
  std::vector<Sample> m_samples;
  std::string m_sample_error;
  std::size_t m_depth = 0;
  bool m_next_is_samples = false;  // the last key read at the top level was "samples"
  bool m_in_samples = false;
};

}  // namespace

Result<WatchRun> run_from_text(std::string_view text) {
  // Each sample is converted, escaped, as soon as it is read, and dropped: a long run is never held whole as JSON
  // (about 19 KB a sample on 8 GPUs) beside its samples.
  ReplaySax sax;
  if (!json::sax_parse(text.begin(), text.end(), &sax)) {
    return fail("not valid JSON");
  }
  json j = sax.head();
  escape_strings(j);
  if (j.is_object() && j.contains("error")) {  // a saved failure: `watch --json` that could not run
    const auto& e = j.at("error");
    return fail("a watch that did not run: " + (e.is_string() ? e.get<std::string>() : describe_value(e)));
  }
  auto run = run_header_from_json(j);
  if (!run) {
    return run;
  }
  if (!sax.sample_error().empty()) {
    return fail(sax.sample_error());
  }
  run->samples = std::move(sax.samples());
  return run;
}

}  // namespace gpuwarm::watch

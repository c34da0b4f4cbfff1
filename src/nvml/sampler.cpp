#include "nvml/sampler.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/strings.h"
#include "nvml/errors.h"
#include "nvml/nvml_library.h"

namespace gpuwarm::nvml {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

template <class T, class Fn, class... Args>
std::optional<T> query(Fn fn, Args... args) {
  if (fn == nullptr) {
    return std::nullopt;
  }
  T value{};
  if (fn(args..., &value) != ret::success) {
    return std::nullopt;
  }
  return value;
}

bool is_index(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

Result<std::unique_ptr<Sampler>> Sampler::open(const std::string& library_path, SampleMode mode,
                                               std::vector<std::string> only) {
  auto lib = Library::open(library_path);
  if (!lib) {
    return tl::unexpected(lib.error());
  }
  std::unique_ptr<Sampler> s(new Sampler());
  s->m_library = std::move(*lib);
  s->m_mode = mode;
  s->m_only = std::move(only);
  return s;
}

Sampler::~Sampler() {
  if (m_initialized && m_library) {
    m_library->api().shutdown();
  }
}

bool Sampler::init(Reading& reading) {
  if (m_initialized) {
    return true;
  }
  auto t = Clock::now();
  Return r = m_library->api().init();
  reading.init_ms = ms_since(t);
  if (r != ret::success) {
    reading.error = "nvmlInit: " + m_library->error_name(r);
    return false;
  }
  m_initialized = true;
  return true;
}

// Lists the GPUs once and keeps the selected ones. Attaching only what the
// selection needs matters in detached mode: attaching initializes a GPU.
void Sampler::discover() {
  const Api& api = m_library->api();
  unsigned count = 0;
  if (api.device_get_count(&count) != ret::success) {
    return;
  }
  bool need_uuids = std::any_of(m_only.begin(), m_only.end(), [](const auto& s) { return !is_index(s); });
  std::vector<bool> matched(m_only.size(), false);
  for (unsigned i = 0; i < count; ++i) {
    bool by_index = false;
    for (std::size_t k = 0; k < m_only.size(); ++k) {
      if (m_only[k] == std::to_string(i)) {
        by_index = matched[k] = true;
      }
    }
    if (!m_only.empty() && !by_index && !need_uuids) {
      m_listed.push_back(std::to_string(i));  // not attached (that would initialize it): its index alone
      continue;
    }
    Device dev = nullptr;
    GpuIdentity id;
    id.index = i;
    auto t = Clock::now();
    Return r = api.device_get_handle_by_index(i, &dev);
    double attach_ms = ms_since(t);
    if (r != ret::success) {
      dev = nullptr;  // read_gpu retries and reports the error
    } else {
      char buf[k_string_buffer] = {};
      if (api.device_get_uuid != nullptr && api.device_get_uuid(dev, buf, sizeof buf) == ret::success) {
        id.uuid = buf;
      }
      if (api.device_get_name != nullptr && api.device_get_name(dev, buf, sizeof buf) == ret::success) {
        id.name = buf;
      }
      id.max_sm_mhz = query<unsigned>(api.device_get_max_clock_info, dev, int{clock_sm});
      id.default_app_sm_mhz = query<unsigned>(api.device_get_default_applications_clock, dev, int{clock_sm});
      id.default_app_mem_mhz = query<unsigned>(api.device_get_default_applications_clock, dev, int{clock_mem});
      id.default_power_limit_mw = query<unsigned>(api.device_get_power_management_default_limit, dev);
    }
    m_listed.push_back(fmt::format("{} ({})", id.index, id.uuid.empty() ? "UUID unread" : id.uuid));
    bool selected = m_only.empty() || by_index;
    for (std::size_t k = 0; k < m_only.size(); ++k) {
      if (!id.uuid.empty() && to_lower(m_only[k]) == to_lower(id.uuid)) {
        selected = matched[k] = true;
      }
    }
    if (selected) {
      m_identities.push_back(std::move(id));
      m_handles.push_back(dev);
      m_discovery_attach_ms.push_back(attach_ms);
    }
  }
  for (std::size_t k = 0; k < m_only.size(); ++k) {
    if (!matched[k]) {
      m_unmatched.push_back(m_only[k]);
    }
  }
  m_discovered = true;
}

void Sampler::read_gpu(std::size_t slot, GpuReading& out) {
  const Api& api = m_library->api();
  out.index = m_identities[slot].index;
  Device dev = m_handles[slot];
  if (dev == nullptr) {
    auto t = Clock::now();
    Return r = api.device_get_handle_by_index(out.index, &dev);
    out.attach_ms = ms_since(t);
    if (r != ret::success) {
      out.error = m_library->error_name(r);
      return;
    }
    m_handles[slot] = dev;
  }
  // A handle taken before the GPU fell off the bus still attaches: its queries say so.
  if (api.device_get_clock_info != nullptr) {
    unsigned sm = 0;
    Return r = api.device_get_clock_info(dev, int{clock_sm}, &sm);
    if (r == ret::success) {
      out.sm_mhz = sm;
    } else if (std::string name = m_library->error_name(r); meaning_of_reason(name) == Meaning::gpu_fault) {
      out.fault = name;
    }
  }
  out.mem_mhz = query<unsigned>(api.device_get_clock_info, dev, int{clock_mem});
  if (auto p = query<int>(api.device_get_performance_state, dev)) {
    out.pstate = static_cast<unsigned>(*p);
  }
  out.event_reasons = query<unsigned long long>(api.device_get_current_clocks_event_reasons, dev);
  // The enforced limit follows the management limit an admin sets, and is
  // cached by NVML (~1 us on an H100, where nvmlDeviceGetPowerManagementLimit takes ~160 us).
  out.power_limit_mw = query<unsigned>(api.device_get_enforced_power_limit, dev);
  if (auto p = query<int>(api.device_get_persistence_mode, dev); p && (*p == 0 || *p == 1)) {
    out.persistence = *p == 1;  // any other answer is no enable state: left unread
  }
  // Application clocks cost ~0.9 ms each (measured on an H100; the other
  // reads here take ~1 us). Detached, they are read every sample: settings
  // reverting after a de-initialization is what is being looked for. Held, the
  // GPU cannot de-initialize, so they are re-read only every few samples.
  if (m_mode == SampleMode::detached || m_samples % k_held_settings_every == 0) {
    out.app_sm_mhz = query<unsigned>(api.device_get_applications_clock, dev, int{clock_sm});
    out.app_mem_mhz = query<unsigned>(api.device_get_applications_clock, dev, int{clock_mem});
  }
}

Reading Sampler::sample(Progress* progress) {
  auto tell = [progress](std::string stage) {
    if (progress != nullptr) {
      progress->set(std::move(stage));
    }
  };
  Reading reading;
  reading.at = Clock::now();
  tell("nvmlInit");
  if (!init(reading)) {
    return reading;
  }
  if (!m_discovered) {
    tell("finding the GPUs (nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex)");
    discover();  // attaches the selected GPUs, timing each: this reading's attaches
  }
  for (std::size_t slot = 0; slot < m_identities.size(); ++slot) {
    GpuReading& g = reading.gpus.emplace_back();
    if (m_handles[slot] != nullptr && m_discovery_attach_ms[slot] >= 0) {
      g.attach_ms = m_discovery_attach_ms[slot];
      m_discovery_attach_ms[slot] = -1;
    }
    tell(fmt::format("reading GPU {}", m_identities[slot].index));
    read_gpu(slot, g);
  }
  ++m_samples;
  if (m_mode == SampleMode::detached) {
    tell("nvmlShutdown");
    m_library->api().shutdown();
    m_initialized = false;
    std::fill(m_handles.begin(), m_handles.end(), nullptr);
  }
  return reading;
}

}  // namespace gpuwarm::nvml

#pragma once
// Repeated cheap readings of every GPU's clock state, for `gpuwarm watch`.
//
// Two modes, because watching changes what is watched: a *held* sampler keeps
// NVML initialized (and so every GPU attached) between readings, which is
// cheap but keeps the driver from de-initializing the GPUs; a *detached* one
// initializes NVML for each reading and shuts it down again, timing the init
// and each GPU's attach, so a GPU that de-initialized in between shows up as a
// slow (cold) attach and as settings back at their defaults.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/deadline.h"
#include "core/result.h"
#include "nvml/nvml_api.h"

namespace gpuwarm::nvml {

class Library;

enum class SampleMode { held, detached };

// A held sampler re-reads application clocks (the one costly query) only on
// every this many samples.
constexpr std::size_t k_held_settings_every = 10;

// What stays put for a GPU: read once, at its first attach.
struct GpuIdentity {
  unsigned index = 0;
  std::string uuid;
  std::string name;
  std::optional<unsigned> max_sm_mhz;
  std::optional<unsigned> default_app_sm_mhz;
  std::optional<unsigned> default_app_mem_mhz;
  std::optional<unsigned> default_power_limit_mw;
};

struct GpuReading {
  unsigned index = 0;
  std::string error;      // the attach failed ("GPU_IS_LOST"): nothing else was read
  std::string fault;      // attached, but the SM clock query answered with a GPU fault ("GPU_IS_LOST")
  double attach_ms = -1;  // nvmlDeviceGetHandleByIndex; -1 when not attached in this reading (held)
  std::optional<unsigned> sm_mhz;
  std::optional<unsigned> mem_mhz;
  std::optional<unsigned> pstate;
  std::optional<std::uint64_t> event_reasons;
  std::optional<unsigned> app_sm_mhz;   // held: read every k_held_settings_every samples only
  std::optional<unsigned> app_mem_mhz;
  std::optional<unsigned> power_limit_mw;  // enforced limit (follows the limit an admin sets)
  std::optional<bool> persistence;
};

struct Reading {
  std::chrono::steady_clock::time_point at;  // when the reading started
  double init_ms = -1;  // nvmlInit in this reading; -1 when NVML was already initialized (held)
  std::string error;    // nvmlInit failed: no GPU was read
  std::vector<GpuReading> gpus;  // the selected GPUs, in NVML index order
};

class Sampler {
 public:
  // `library_path` "" = libnvidia-ml.so.1. `only`: NVML indices or UUIDs to
  // read (empty = every GPU). Nothing is initialized until the first sample.
  static Result<std::unique_ptr<Sampler>> open(const std::string& library_path, SampleMode mode,
                                               std::vector<std::string> only = {});
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // `progress` (optional) is told the NVML step in progress, so a deadline that passes can say where it stuck.
  Reading sample(Progress* progress = nullptr);

  // Identities of the GPUs read so far (filled by the first successful sample).
  const std::vector<GpuIdentity>& gpus() const { return m_identities; }
  // Selectors in `only` that matched no GPU (known after the first successful sample).
  const std::vector<std::string>& unmatched() const { return m_unmatched; }
  // Every GPU NVML listed, selected or not, as "index (UUID)", or its index alone where the selection did not
  // need it attached: what an unmatched --gpu could have named.
  const std::vector<std::string>& listed() const { return m_listed; }
  SampleMode mode() const { return m_mode; }

 private:
  Sampler() = default;
  bool init(Reading& reading);
  void discover();
  void read_gpu(std::size_t slot, GpuReading& out);

  std::unique_ptr<Library> m_library;
  SampleMode m_mode = SampleMode::detached;
  std::vector<std::string> m_only;
  bool m_initialized = false;  // held mode: NVML stays initialized after the first reading
  bool m_discovered = false;
  std::size_t m_samples = 0;
  std::vector<GpuIdentity> m_identities;
  std::vector<std::string> m_unmatched;
  std::vector<std::string> m_listed;
  std::vector<Device> m_handles;  // per identity; detached mode drops them at each shutdown
  std::vector<double> m_discovery_attach_ms;  // the first reading's attach times
};

}  // namespace gpuwarm::nvml

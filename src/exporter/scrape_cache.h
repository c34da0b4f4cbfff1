#pragma once
// One collection shared by every scrape that arrives while it runs, and reused for scrapes within
// --min-interval of its start: a scrape storm (several Prometheus servers, a curl loop) never turns
// into a collection storm, and NVML is touched only when someone asks.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace gpuwarm {

class ScrapeCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Body = std::shared_ptr<const std::string>;

  // `collect` runs on the scraping thread, one at a time. `now` is injectable for tests.
  ScrapeCache(std::function<std::string()> collect, std::chrono::duration<double> min_interval,
              std::function<Clock::time_point()> now = &Clock::now)
      : m_collect(std::move(collect)),
        m_min_interval(std::chrono::duration_cast<Clock::duration>(min_interval)),
        m_now(std::move(now)) {
    // Prometheus scrapes on a fixed period: a scrape one period later can arrive a hair early. Without
    // this slack, --min-interval equal to the scrape interval would reuse every other collection.
    m_reuse_below = m_min_interval - std::min<Clock::duration>(std::chrono::seconds(1), m_min_interval / 10);
  }

  // The newest collection's text; null when the collection threw.
  Body get() {
    std::unique_lock<std::mutex> lock(m_mutex);
    if (m_in_flight) {
      auto generation = m_generation;
      m_done.wait(lock, [&] { return m_generation != generation; });
      return m_body;
    }
    if (m_generation > 0 && m_now() - m_started < m_reuse_below) {
      return m_body;
    }
    m_in_flight = true;
    m_started = m_now();
    lock.unlock();
    Body body;
    try {
      body = std::make_shared<const std::string>(m_collect());
    } catch (...) {
      body = nullptr;  // answered as 500; the next scrape tries again
    }
    lock.lock();
    m_body = body;
    if (!body) {
      m_started = Clock::time_point{};  // never reuse a failure
    }
    ++m_generation;
    ++m_collections;
    m_in_flight = false;
    m_done.notify_all();
    return body;
  }

  unsigned long collections() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_collections;
  }

 private:
  std::function<std::string()> m_collect;
  Clock::duration m_min_interval;
  Clock::duration m_reuse_below;
  std::function<Clock::time_point()> m_now;
  mutable std::mutex m_mutex;
  std::condition_variable m_done;
  bool m_in_flight = false;
  unsigned long m_generation = 0;
  unsigned long m_collections = 0;
  Clock::time_point m_started{};
  Body m_body;
};

}  // namespace gpuwarm

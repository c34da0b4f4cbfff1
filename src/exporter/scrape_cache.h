#pragma once
// One collection shared by every scrape that arrives while it runs, and reused for scrapes within
// --min-interval of its start: a scrape storm (several Prometheus servers, a curl loop) never turns
// into a collection storm, and NVML is touched only when someone asks. Collections run on one thread of
// the cache's own, so a scrape that waits for one costs a callback, not a thread.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/signal_shield.h"

namespace gpuwarm {

class ScrapeCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Body = std::shared_ptr<const std::string>;
  using Ready = std::function<void(Body)>;  // must not throw

  // `collect` runs on the cache's thread, one at a time. `now` is injectable for tests.
  ScrapeCache(std::function<std::string()> collect, std::chrono::duration<double> min_interval,
              std::function<Clock::time_point()> now = &Clock::now)
      : m_collect(std::move(collect)),
        m_min_interval(std::chrono::duration_cast<Clock::duration>(min_interval)),
        m_now(std::move(now)) {
    // Prometheus scrapes on a fixed period: a scrape one period later can arrive a hair early. Without
    // this slack, --min-interval equal to the scrape interval would reuse every other collection.
    m_reuse_below = m_min_interval - std::min<Clock::duration>(std::chrono::seconds(1), m_min_interval / 10);
    AllSignalsBlocked created_blocked;  // signals are the main thread's
    m_collector = std::thread([this] { run(); });
  }

  // Waits for a collection in flight (bounded by the collection's own NVML deadline); scrapes still waiting
  // then get null.
  ~ScrapeCache() {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_stopping = true;
    }
    m_wake.notify_all();
    m_collector.join();
  }
  ScrapeCache(const ScrapeCache&) = delete;
  ScrapeCache& operator=(const ScrapeCache&) = delete;

  // Calls `ready` with the newest collection's text (null when the collection threw): at once, on this
  // thread, when one within the reuse window exists; otherwise from the cache's thread when the collection
  // running now, or the one this call starts, ends.
  void get_async(Ready ready) {
    std::unique_lock<std::mutex> lock(m_mutex);
    if (!m_in_flight && m_generation > 0 && m_now() - m_started < m_reuse_below) {
      Body body = m_body;
      lock.unlock();
      ready(std::move(body));
      return;
    }
    if (m_stopping) {
      lock.unlock();
      ready(nullptr);
      return;
    }
    m_waiting.push_back(std::move(ready));
    m_wake.notify_all();
  }

  // The same, waiting on this thread.
  Body get() {
    auto promise = std::make_shared<std::promise<Body>>();
    auto answer = promise->get_future();
    get_async([promise](Body body) { promise->set_value(std::move(body)); });
    return answer.get();
  }

  unsigned long collections() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_collections;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(m_mutex);
    for (;;) {
      m_wake.wait(lock, [this] { return m_stopping || !m_waiting.empty(); });
      if (m_stopping) {
        break;
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
      // Everyone who asked while it ran, or before it started, gets this one.
      std::vector<Ready> answered = std::move(m_waiting);
      m_waiting.clear();
      lock.unlock();
      for (auto& ready : answered) {
        ready(body);
      }
      lock.lock();
    }
    std::vector<Ready> unanswered = std::move(m_waiting);
    m_waiting.clear();
    lock.unlock();
    for (auto& ready : unanswered) {
      ready(nullptr);
    }
  }

  std::function<std::string()> m_collect;
  Clock::duration m_min_interval;
  Clock::duration m_reuse_below;
  std::function<Clock::time_point()> m_now;
  mutable std::mutex m_mutex;
  std::condition_variable m_wake;
  bool m_in_flight = false;
  bool m_stopping = false;
  unsigned long m_generation = 0;
  unsigned long m_collections = 0;
  Clock::time_point m_started{};
  Body m_body;
  std::vector<Ready> m_waiting;
  std::thread m_collector;  // last: started once every member above exists
};

}  // namespace gpuwarm

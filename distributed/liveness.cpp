#include "distributed/liveness.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <vector>

#include "core/error.h"

namespace sculpt::distributed {

namespace {
using Ms = std::chrono::milliseconds;
constexpr Ms kPeriod{500};  // a beat every half second
constexpr Ms kWatch{1500};  // a rank that did not beat within three periods stopped

// Per restart of the group: a restarted worker must not beat for the process it replaced.
std::string key_of(int rank) {
  const char* restart = std::getenv("TORCHELASTIC_RESTART_COUNT");
  return std::string("sculpt/alive/") + (restart ? restart : "0") + "/" + std::to_string(rank);
}
}  // namespace

Heartbeat::Heartbeat(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world,
                     double wait_s)
    : rank_(rank), world_(world) {
  const Ms wait(static_cast<int64_t>(std::max(1.0, std::min(wait_s, 10.0)) * 1000));
  beat_store_ = store->clone();
  beat_store_->setTimeout(wait);
  read_store_ = store->clone();
  read_store_->setTimeout(wait);
  beat_store_->add(key_of(rank_), 1);
  thread_ = std::thread([this] { beat(); });
}

Heartbeat::~Heartbeat() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Heartbeat::beat() {
  std::unique_lock<std::mutex> lock(m_);
  while (!cv_.wait_for(lock, kPeriod, [this] { return stop_.load(); })) {
    lock.unlock();
    try {
      beat_store_->add(key_of(rank_), 1);
    } catch (...) {
      // The store is gone or stopped: nothing to beat into; the collectives report it.
    }
    lock.lock();
  }
}

std::string Heartbeat::diagnose() const {
  auto counts = [this] {
    std::vector<int64_t> c(static_cast<size_t>(world_));
    for (int r = 0; r < world_; ++r) c[static_cast<size_t>(r)] = read_store_->add(key_of(r), 0);
    return c;
  };
  std::vector<int64_t> before, after;
  try {
    before = counts();
    std::this_thread::sleep_for(kWatch);
    after = counts();
  } catch (const std::exception&) {
    return rank_ == 0 ? "the store does not answer"
                      : "the store on rank 0 does not answer either: rank 0 stopped responding "
                        "(stopped, died or hung)";
  }
  std::string stopped;
  for (int r = 0; r < world_; ++r)
    if (r != rank_ && after[static_cast<size_t>(r)] == before[static_cast<size_t>(r)])
      stopped += (stopped.empty() ? "" : ", ") + std::to_string(r);
  if (stopped.empty())
    return "every other rank still beats (a rank is alive but elsewhere: another step, a slow "
           "load, a different config?)";
  return detail::concat(stopped.find(',') == std::string::npos ? "rank " : "ranks ", stopped,
                        " stopped responding (no heartbeat in ", kWatch.count() / 1000.0,
                        " s: stopped, died or hung)");
}

}  // namespace sculpt::distributed

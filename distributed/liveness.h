// Which rank stopped responding. Every rank's heartbeat thread adds 1 to its counter in the
// rendezvous store (sculpt/alive/<rank>) twice a second, over its own store connection. When a
// collective fails or times out, the surviving ranks read the counters twice, 1.5 s apart, and
// name the ranks whose counter stood still: a process that was stopped (SIGSTOP), died or
// hangs with its threads stopped. A rank that is alive but stuck elsewhere keeps beating and is
// not named; the message then says that no rank stopped.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace sculpt::distributed {

class Heartbeat {
 public:
  // `store`: the run's store (a clone of it is used, so the beats never wait on its users).
  // `wait_s`: the longest a store operation may block (the store itself may be what stopped).
  Heartbeat(const c10::intrusive_ptr<c10d::Store>& store, int rank, int world, double wait_s);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // A sentence for an error message: "rank 1 stopped responding (no heartbeat in 1.5 s)",
  // "every rank still beats (...)", or that the store on rank 0 does not answer either.
  std::string diagnose() const;

 private:
  void beat();

  c10::intrusive_ptr<c10d::Store> beat_store_, read_store_;
  int rank_, world_;
  std::atomic<bool> stop_{false};
  std::mutex m_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace sculpt::distributed

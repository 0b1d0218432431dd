// Random initialization that a caller can skip: while a SkipRandomInit lives on this thread,
// Sculpt's layers leave their new parameters uninitialized (at::empty), because every one of them
// is about to be overwritten (a checkpoint load). Saves a pass of random draws over every weight.
#pragma once

namespace sculpt::nn {

class SkipRandomInit {
 public:
  SkipRandomInit();
  ~SkipRandomInit();
  SkipRandomInit(const SkipRandomInit&) = delete;
  SkipRandomInit& operator=(const SkipRandomInit&) = delete;
  static bool active();

 private:
  bool previous_;
};

}  // namespace sculpt::nn

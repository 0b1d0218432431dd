// What a trainer tells the config check about itself, through its options section (the
// `trainers` registry's options factory makes one that also derives from TrainerTraits). A
// trainer without such a section is a plain supervised loop: no increments, pipelines allowed.
#pragma once

namespace sculpt::config {

struct TrainerTraits {
  virtual ~TrainerTraits() = default;
  // It trains on the `increments:` sequence (and reads `incremental:`); none runs under a
  // pipeline.
  virtual bool trains_on_increments() const = 0;
};

}  // namespace sculpt::config

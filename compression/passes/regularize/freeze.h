// freeze: the chosen layers are not trained until `unfreeze_at` (steps, "2e" epochs or a fraction
// of the run; the whole run when 0), then train again. For fine-tuning a head on a fixed backbone, or as a sanity pass.
#pragma once

#include <cstdint>
#include <memory>

#include "compression/pass.h"

namespace sculpt::compression {

struct FreezeOptions : config::Section {
  config::StepPoint unfreeze_at;  // when the layers train again (500, 2e, 0.5); 0: never
  void visit(config::Visitor& v) override;
};

std::unique_ptr<CompressionPass> make_freeze_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression

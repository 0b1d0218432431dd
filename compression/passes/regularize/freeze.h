// freeze: the chosen layers are not trained for the first `unfreeze_at` steps (the whole run
// when 0), then train again. For fine-tuning a head on a fixed backbone, or as a sanity pass.
#pragma once

#include <cstdint>
#include <memory>

#include "compression/pass.h"

namespace sculpt::compression {

struct FreezeOptions : config::Section {
  int64_t unfreeze_at = 0;  // step after which the layers train again, >= 0; 0: never
  void visit(config::Visitor& v) override;
};

std::unique_ptr<CompressionPass> make_freeze_pass(const config::PassConfig& cfg);

}  // namespace sculpt::compression

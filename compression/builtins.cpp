#include "compression/compression.h"
#include "compression/pass.h"
#include "compression/passes/freeze.h"
#include "compression/passes/l2sp.h"
#include "compression/passes/distill.h"
#include "compression/passes/quantize/quantize.h"

namespace sculpt::compression {

void register_builtin_passes(PassRegistry& r) {
  add_distill(r);
  add_quantize(r);
  r.add("freeze", "keeps the chosen layers' weights fixed until step unfreeze_at (0: whole run)",
        make_freeze_pass, [] { return std::make_shared<FreezeOptions>(); });
  r.add("l2sp", "pulls the chosen layers toward their initial weights: alpha/2 * sum((w - w0)^2)",
        make_l2sp_pass, [] { return std::make_shared<L2spOptions>(); });
}

void register_compression_builtins() {
  register_builtin_passes(pass_registry());
}

}  // namespace sculpt::compression

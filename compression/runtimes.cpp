#include "compression/runtimes.h"

#include "compression/pass.h"

namespace sculpt::compression {

void install_runtimes(const config::Config& cfg, models::Model& model) {
  for (const auto& pass : build_recipe(cfg))
    if (auto* p = dynamic_cast<RuntimeProvider*>(pass.get())) p->install_runtimes(model);
}

}  // namespace sculpt::compression

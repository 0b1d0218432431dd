#include "compression/pass.h"

#include <cmath>
#include <regex>
#include <sstream>

#include "compression/fisher_board.h"
#include "core/config/visitors.h"
#include "core/error.h"
#include "core/logging/logging.h"
#include "core/models/model.h"
#include "trainers/run_parts.h"

namespace sculpt::compression {

PassRegistry& pass_registry() {
  static PassRegistry registry("passes");
  return registry;
}

CompressionPass::CompressionPass(const config::PassConfig& cfg) : cfg_(cfg) {}

namespace {
std::regex compile(const std::string& pattern, const std::string& pass, const std::string& key) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw UserError("compression pass " + pass + ": " + key + " '" + pattern +
                    "' is not a valid regex (" + e.what() + ")");
  }
}
}  // namespace

std::vector<Target> CompressionPass::select_layers(torch::nn::Module& model) const {
  const auto layers = nn::compressible_layers(model);
  std::string known;
  for (const auto& [n, l] : layers) known += (known.empty() ? "" : ", ") + n;
  auto matching = [&](const std::string& pattern, const std::string& key) {
    const auto re = compile(pattern, cfg_.name, key);
    std::vector<bool> hit(layers.size());
    bool any = false;
    for (size_t i = 0; i < layers.size(); ++i) any |= (hit[i] = std::regex_match(layers[i].first, re));
    if (!any) {
      const std::string msg = "compression pass " + cfg_.name + ": " + key + " pattern '" +
                              pattern + "' matches no layer; the layers are: " + known;
      if (cfg_.strict) throw UserError(msg);
      log::warn(msg);
    }
    return hit;
  };
  std::vector<bool> chosen(layers.size(), cfg_.include.empty());
  for (const auto& p : cfg_.include) {
    auto hit = matching(p, "include");
    for (size_t i = 0; i < layers.size(); ++i) chosen[i] = chosen[i] || hit[i];
  }
  for (const auto& p : cfg_.exclude) {
    auto hit = matching(p, "exclude");
    for (size_t i = 0; i < layers.size(); ++i) chosen[i] = chosen[i] && !hit[i];
  }
  // Overrides are rules: the first item whose pattern matches a layer decides its options.
  std::vector<const config::Section*> options(layers.size(), nullptr);
  for (const auto& o : cfg_.overrides) {
    auto hit = matching(o.layers, "overrides.layers");
    for (size_t i = 0; i < layers.size(); ++i)
      if (hit[i] && !options[i]) options[i] = o.options.get();
  }
  for (auto& o : options)
    if (!o) o = cfg_.options.get();
  std::vector<Target> out;
  for (size_t i = 0; i < layers.size(); ++i)
    if (chosen[i]) out.push_back({layers[i].first, layers[i].second, options[i]});
  return out;
}

std::string CompressionPass::describe(const Target& target) const {
  if (!target.options) return "";
  // The layer's options as one line of YAML keys.
  std::string yaml = config::dump_yaml(const_cast<config::Section&>(*target.options));
  std::string line;
  std::istringstream in(yaml);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) line += (line.empty() ? "" : ", ") + l;
  return line;
}

trainers::Callbacks build_recipe(const config::Config& cfg) {
  trainers::Callbacks out;
  std::vector<std::unique_ptr<CompressionPass>> passes;
  for (const auto& pc : cfg.compression) passes.push_back(pass_registry().create(pc.name, pc));
  for (size_t i = 0; i < passes.size(); ++i)
    for (size_t j = 0; j < passes.size(); ++j) {
      if (i == j) continue;
      for (const auto& bad : passes[i]->incompatible_with())
        SCULPT_CHECK(bad != passes[j]->name(), cfg.source_file, ": compression[", i, "] ",
                     passes[i]->name(), " cannot be combined with compression[", j, "] ",
                     passes[j]->name());
    }
  // The recipe's Fisher board, shared by the passes that publish or read Fisher estimates.
  std::shared_ptr<FisherBoard> board;
  for (auto& p : passes)
    if (auto* user = dynamic_cast<FisherBoardUser*>(p.get())) {
      if (!board) board = std::make_shared<FisherBoard>();
      user->set_fisher_board(board);
    }
  for (auto& p : passes) out.push_back(std::move(p));
  return out;
}

std::string explain_recipe(const config::Config& cfg) {
  std::ostringstream os;
  auto recipe = build_recipe(cfg);
  const auto all = data::dataset_registry().create(cfg.data.name, cfg.data, data::DataPart::train);
  auto model = models::model_registry().create(cfg.model.name, cfg.model, all->spec());
  const auto layers = nn::compressible_layers(*model);
  os << "model " << cfg.model.name << ": " << layers.size() << " compressible layers, "
     << model->parameter_count() << " parameters\n";
  if (recipe.empty()) os << "recipe: empty (no compression: list), plain training\n";
  for (size_t i = 0; i < recipe.size(); ++i) {
    const auto& pass = dynamic_cast<const CompressionPass&>(*recipe[i]);
    const auto targets = pass.select_layers(*model);
    os << "compression[" << i << "] " << pass.name() << ": " << targets.size() << " of "
       << layers.size() << " layers\n";
    for (const auto& t : targets) {
      const std::string how = pass.describe(t);
      os << "  " << t.name << " " << t.layer->raw_weight().sizes()  // prints as [16, 8]
         << (how.empty() ? "" : ": " + how) << "\n";
    }
  }
  return os.str();
}

}  // namespace sculpt::compression

// Registration of each built-in model (one function per file, all called from
// register_builtin_models in model.cpp: one explicit list).
#pragma once

#include "core/models/model.h"

namespace sculpt::models {
void add_lenet5(ModelRegistry& r);
void add_resnet(ModelRegistry& r);
void add_transformers(ModelRegistry& r);
}  // namespace sculpt::models

#!/usr/bin/env bash
# The SDK as a plugin author uses it (ctest runs this; see tests/CMakeLists.txt):
#   1. `cmake --install` this build into a prefix,
#   2. configure and build examples/plugins against that prefix with find_package(Sculpt),
#   3. train twice with the plugin named under `plugins:` (a path relative to the YAML file) and
#      its pass under `compression:`: lambda 0 (baseline) and a strong lambda,
#   4. check its effect on the trained weights: with the strong lambda, the hidden layer's rows
#      are mostly exactly zero in model.safetensors (read by `sculpt inspect`) and their mean
#      norm is far below the baseline's; summary.json carries the pass's summary.
# Usage: example_plugin.sh BUILD_DIR SOURCE_DIR CMAKE GENERATOR CXX [CCACHE]
set -euo pipefail
build="$1" src="$2" cmake="$3" generator="$4" cxx="$5" ccache="${6:-}"
# Fixed paths (not mktemp): the example's compile line stays the same, so ccache hits on reruns.
work="$build/test-tmp/sdk"
prefix="$work/prefix"
fail() { echo "example_plugin.sh: FAILED: $*" >&2; exit 1; }

rm -rf "$prefix" "$work/runs"
mkdir -p "$work"
echo "== 1. cmake --install $build --prefix $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log"; fail "cmake --install"; }
[ -f "$prefix/lib/cmake/Sculpt/SculptConfig.cmake" ] || fail "no SculptConfig.cmake installed"
[ -f "$prefix/include/compression/plugin.h" ] || fail "no compression/plugin.h installed"

echo "== 2. build examples/plugins against $prefix"
launcher=()
if [ -n "$ccache" ] && [ -x "$ccache" ]; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER="$ccache"); fi
# A fresh configure each time: the installed tree was just replaced.
rm -rf "$work/example-build"
"$cmake" -S "$src/examples/plugins" -B "$work/example-build" -G "$generator" \
  -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure examples/plugins"; }
"$cmake" --build "$work/example-build" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; fail "build examples/plugins"; }
plugin="$work/example-build/libgroup_lasso.so"
[ -f "$plugin" ] || fail "no $plugin"

echo "== 3. train with the plugin"
sculpt="$prefix/bin/sculpt"  # the installed executable: it must find its libraries and torch
mkdir -p "$work/runs"
cat >"$work/runs/base.yaml" <<YAML
run: {name: gl, device: cpu, seed: 3}
model: {name: mlp, hidden: [32]}
data: {name: synthetic_blobs, samples: 512, batch_size: 32}
optimizer: {name: sgd, lr: 0.1}
trainer: {epochs: 0, max_steps: 300, log_every: 100}
plugins: [../example-build/libgroup_lasso.so]
compression:
  - name: group_lasso
    include: ["hidden0.*"]
    lambda: 0.0
    threshold: 0.02
YAML
# Into a file first: `grep -q` stops reading at the match, and under pipefail the listing's
# later writes would fail the pipe (SIGPIPE).
"$sculpt" list passes --plugin "$plugin" >"$work/passes.txt" || fail "list passes --plugin"
grep -q "group_lasso" "$work/passes.txt" || fail "list passes --plugin: no group_lasso"
for lambda in 0.0 0.05; do
  "$sculpt" train "$work/runs/base.yaml" "compression[0].lambda=$lambda" \
    "run.output_dir=$work/runs/lambda_$lambda" >"$work/runs/train_$lambda.log" 2>&1 ||
    { cat "$work/runs/train_$lambda.log"; fail "sculpt train with lambda $lambda"; }
done

echo "== 4. effect on the weights"
# The share of zeros of the hidden layer's weight, as `sculpt inspect` prints it.
zeros() {
  "$sculpt" inspect "$work/runs/lambda_$1/model.safetensors" |
    awk '$1 ~ /hidden0.*weight$/ { sub("%", "", $NF); print $NF; exit }'
}
# The pass's summary: mean row norm of the one layer it acted on.
mean_norm() {
  grep -o '"mean_row_norm": [0-9.e+-]*' "$work/runs/lambda_$1/summary.json" | head -1 | awk '{print $2}'
}
grep -q '"pass": "group_lasso"' "$work/runs/lambda_0.05/summary.json" ||
  fail "summary.json has no group_lasso section"
z0=$(zeros 0.0) z1=$(zeros 0.05) n0=$(mean_norm 0.0) n1=$(mean_norm 0.05)
echo "hidden layer: zeros ${z0}% -> ${z1}%, mean row norm ${n0} -> ${n1}"
[ -n "$z0" ] && [ -n "$z1" ] && [ -n "$n0" ] && [ -n "$n1" ] || fail "could not read the results"
awk -v z0="$z0" -v z1="$z1" -v n0="$n0" -v n1="$n1" \
  'BEGIN { exit !(z0 < 1 && z1 >= 50 && n1 < 0.5 * n0) }' ||
  fail "expected the penalty to zero most rows (zeros ${z0}% -> ${z1}%) and halve the mean row norm (${n0} -> ${n1})"
echo "example_plugin.sh: OK"

#!/usr/bin/env bash
# scripts/pipeline_stages.sh (run.sh's choice of one process or one per pipeline stage):
#   tests/scripts/pipeline_stages.sh SCULPT SOURCE_DIR
# A resolved config over one 4 KB write (configs/gr/qat.yaml, updates.yaml) used to end run.sh
# with SIGPIPE (exit 141, no message) on every try; each try must now print 1 and exit 0. A
# pipelined config prints its stages, a config that does not resolve prints 1.
set -uo pipefail
sculpt=$1
src=$2
stages="$src/scripts/pipeline_stages.sh"
fail() { echo "FAIL: $*" >&2; exit 1; }
for cfg in configs/gr/qat.yaml configs/gr/updates.yaml; do
  size=$("$sculpt" validate "$src/$cfg" | wc -c)
  [ "$size" -gt 4096 ] || fail "$cfg resolves to $size bytes: pick a config over 4096"
  for i in $(seq 10); do
    out=$("$stages" "$sculpt" "$src/$cfg") || fail "$cfg: exit $? on try $i"
    [ "$out" = 1 ] || fail "$cfg: printed '$out', not 1"
  done
done
out=$("$stages" "$sculpt" "$src/configs/pipeline_vit.yaml") || fail "pipeline_vit: exit $?"
[ "$out" = 2 ] || fail "pipeline_vit.yaml: printed '$out', not its 2 stages"
out=$("$stages" "$sculpt" "$src/configs/pipeline_vit.yaml" distributed.pipeline.stages=3)
[ "$out" = 3 ] || fail "an override of the stages: printed '$out', not 3"
out=$("$stages" "$sculpt" "$src/no/such.yaml") || fail "a missing config: exit $?"
[ "$out" = 1 ] || fail "a missing config: printed '$out', not 1"
echo "pipeline_stages.sh: every case passed"

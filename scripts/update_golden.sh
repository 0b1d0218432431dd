#!/usr/bin/env bash
# Rewrites tests/golden/*.json from the current build (tests/integration/test_golden.cpp), for a
# change that is meant to alter the numbers a run logs. Say so in the commit message.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${BUILD_DIR:-$root/build}"
cd "$dir" && SCULPT_WRITE_GOLDEN=1 ctest -R "golden" --output-on-failure
git -C "$root" diff --stat -- tests/golden

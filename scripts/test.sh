#!/usr/bin/env bash
# Installs what is missing, builds, runs every test through ctest and ends with one line:
#   N passed, N failed[, N skipped]
# Extra arguments go to ctest (e.g. -L unit, -R config). Exit 0 only when nothing failed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh" || { echo "test.sh: build failed"; echo "0 passed, 1 failed"; exit 1; }
dir="${BUILD_DIR:-$root/build}"
junit="$dir/ctest-junit.xml"
# Tests run in parallel on few cores: one OpenMP thread per test process, or the processes'
# spinning thread pools starve each other (runs 10-50x slower on 2 cores).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
rm -f "$junit"
(cd "$dir" && ctest --output-on-failure --timeout 600 -j "${SCULPT_TEST_JOBS:-2}" \
  --output-junit "$junit" "$@")
rc=$?
if [ ! -f "$junit" ]; then
  echo "test.sh: ctest produced no results (exit code $rc)"
  echo "0 passed, 1 failed"
  exit 1
fi
# ctest's JUnit file: one <testcase ... status="run|fail|notrun|disabled"> per test.
passed=$(grep -c '<testcase[^>]*status="run"' "$junit")
failed=$(grep -c '<testcase[^>]*status="fail"' "$junit")
skipped=$(grep -cE '<testcase[^>]*status="(notrun|disabled)"' "$junit")
line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
[ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]

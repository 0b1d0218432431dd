#!/usr/bin/env bash
# Installs what is missing, builds, and trains: scripts/run.sh CONFIG [key.path=value ...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: scripts/run.sh CONFIG [key.path=value ...]" >&2
  exit 2
fi
"$root/scripts/build.sh" >/dev/null || { echo "run.sh: build failed; see: scripts/build.sh" >&2; exit 1; }
# A pipelined config (distributed.pipeline.stages > 1) needs one process per stage: outside a
# launcher, start them with sculpt-run on this machine.
stages=$("$root/scripts/pipeline_stages.sh" "$root/build/bin/sculpt" "$@")
if [ -z "${WORLD_SIZE:-}" ] && [ "${stages:-1}" -gt 1 ] 2>/dev/null; then
  exec "$root/build/bin/sculpt-run" --standalone --nproc-per-node "$stages" -- \
    "$root/build/bin/sculpt" train "$@"
fi
exec "$root/build/bin/sculpt" train "$@"

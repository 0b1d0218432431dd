#!/usr/bin/env bash
# Installs what is missing, builds, and trains: scripts/run.sh CONFIG [key.path=value ...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: scripts/run.sh CONFIG [key.path=value ...]" >&2
  exit 2
fi
"$root/scripts/build.sh" >/dev/null || { echo "run.sh: build failed; see: scripts/build.sh" >&2; exit 1; }
exec "$root/build/bin/sculpt" train "$@"

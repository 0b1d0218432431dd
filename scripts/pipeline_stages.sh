#!/usr/bin/env bash
# The pipeline stages a config asks for: scripts/pipeline_stages.sh SCULPT CONFIG [key.path=value ...]
# prints distributed.pipeline.stages of the resolved config (SCULPT: the sculpt binary), or 1
# when the config does not resolve (`sculpt train` then reports why). scripts/run.sh starts one
# process per stage when it is over 1.
# awk reads the whole resolved config: stopping at the key would close the pipe while `sculpt
# validate` may still be writing (a config over one 4 KB write), and under pipefail that
# SIGPIPE ended run.sh without a word.
set -uo pipefail
sculpt=$1
shift
stages=$({ "$sculpt" validate "$@" 2>/dev/null || true; } |
  awk '/^distributed:/{d=1; next} /^[a-z]/{d=0}
       d && /^  pipeline:/{p=1; next} d && p && /^    stages:/ && !n++ {print $2}')
echo "${stages:-1}"

#!/usr/bin/env bash
# Installs what Sculpt needs, once per machine, and writes the env file the other scripts source.
#   Debian packages of DESIGN.md §1 (apt-get; `update` only when a package is not found),
#   a virtualenv with torch==2.11.0 (and the packages the Python interop tests read with:
#   transformers writes the Hugging Face fixtures of tests/hf/) in
#   ${SCULPT_DEPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sculpt}.
# Idempotent and quiet when everything is present; on failure it names the step and the retry.
set -euo pipefail

TORCH_VERSION="2.11.0"
DEPS_DIR="${SCULPT_DEPS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sculpt}"
VENV="$DEPS_DIR/venv"
ENV_FILE="$DEPS_DIR/env.sh"
APT_PACKAGES=(cmake ninja-build g++ ccache python3-venv libyaml-cpp-dev libspdlog-dev libfmt-dev
  libcli11-dev catch2 nlohmann-json3-dev libgloo-dev zlib1g-dev
  libonnx-dev libprotobuf-dev protobuf-compiler libicu-dev libpcre2-dev clang-14 libclang-rt-14-dev)
PIP_PACKAGES=("torch==$TORCH_VERSION" numpy safetensors tensorboard "transformers==5.25.0" sentencepiece "compressed-tensors==0.20.1"
  "onnx==1.23.2" "onnxruntime==1.32.0")

fail() { # step, detail, retry command
  printf 'setup.sh: FAILED at step "%s"\n  %s\n  retry with: %s\n' "$1" "$2" "$3" >&2
  exit 1
}

# 1. Debian packages: only the missing ones, `apt-get update` once and only if needed.
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -qq "${missing[@]}" >/tmp/sculpt-apt.log 2>&1; then
    $sudo apt-get update -qq >/tmp/sculpt-apt-update.log 2>&1 ||
      fail "apt-get update" "see /tmp/sculpt-apt-update.log" "$sudo apt-get update"
    $sudo apt-get install -y -qq "${missing[@]}" >/tmp/sculpt-apt.log 2>&1 ||
      fail "apt-get install" "packages: ${missing[*]} (log: /tmp/sculpt-apt.log)" \
        "$sudo apt-get install -y ${missing[*]}"
  fi
fi

# 2. The virtualenv with torch (pip keeps its wheel cache in the same machine-wide dir).
mkdir -p "$DEPS_DIR"
stamp="$VENV/.sculpt-ready-$(echo "${PIP_PACKAGES[*]}" | md5sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup.sh: creating virtualenv $VENV"
    python3 -m venv "$VENV" || fail "python3 -m venv" "could not create $VENV" "python3 -m venv $VENV"
  fi
  echo "setup.sh: installing ${PIP_PACKAGES[*]} into $VENV (once per machine)"
  PIP_CACHE_DIR="$DEPS_DIR/pip-cache" "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "${PIP_PACKAGES[@]}" ||
    fail "pip install" "packages: ${PIP_PACKAGES[*]}" "$VENV/bin/pip install ${PIP_PACKAGES[*]}"
  touch "$stamp"
fi

# 3. The env file: computed once, rewritten only when it changes (atomic rename).
if [ ! -f "$ENV_FILE" ] || [ "$stamp" -nt "$ENV_FILE" ] || [ "$0" -nt "$ENV_FILE" ]; then
  prefix=$("$VENV/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null) ||
    fail "locate torch" "$VENV/bin/python cannot import torch" "rm -rf $VENV && $0"
  tmp="$ENV_FILE.tmp.$$"
  {
    echo "# written by scripts/setup.sh; sourced by build.sh, run.sh, test.sh"
    echo "export SCULPT_DEPS_DIR=\"$DEPS_DIR\""
    echo "export SCULPT_PYTHON=\"$VENV/bin/python\""
    echo "export SCULPT_TORCH_PREFIX=\"$prefix\""
    echo "export CCACHE_DIR=\"\${CCACHE_DIR:-$DEPS_DIR/ccache}\""
  } >"$tmp"
  mv -f "$tmp" "$ENV_FILE"
fi

#!/usr/bin/env bash
# Fetches the Debian packages the build needs besides torch (yaml-cpp, spdlog, fmt, CLI11,
# Catch2, nlohmann-json) as .deb files and unpacks them into .gpu-deps/root, so they can be
# carried to a GPU machine that has no package registry (scripts/gpu_check.sh uses them).
# .gpu-deps/ is ignored by git (.git/info/exclude).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$root/.gpu-deps"
mkdir -p "$deps/debs" "$deps/root"
# In a worktree .git is a file: the exclude list lives in the common git folder.
exclude="$(git -C "$root" rev-parse --path-format=absolute --git-common-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
grep -qx '.gpu-deps/' "$exclude" 2>/dev/null || echo '.gpu-deps/' >>"$exclude"
cd "$deps/debs"
pkgs=(libyaml-cpp-dev libyaml-cpp0.7 libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
      libcli11-dev catch2 nlohmann-json3-dev zlib1g-dev zlib1g)
apt-get download "${pkgs[@]}" >/dev/null
for d in *.deb; do dpkg -x "$d" "$deps/root"; done
echo "fetch_gpu_deps.sh: unpacked ${#pkgs[@]} packages into $deps/root"

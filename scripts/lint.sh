#!/usr/bin/env bash
# Format check (clang-format, 100 columns) and clang-tidy on the C++ files changed against a
# base (default: origin/main if it exists, else HEAD), plus uncommitted and untracked ones.
#   scripts/lint.sh            check changed files
#   scripts/lint.sh --all      check every file
#   scripts/lint.sh --fix      rewrite formatting in place
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode=check all=0
for a in "$@"; do
  case "$a" in
    --fix) mode=fix ;;
    --all) all=1 ;;
    *) echo "usage: scripts/lint.sh [--all] [--fix]" >&2; exit 2 ;;
  esac
done
pattern='\.(cpp|h|cu)$'
if [ $all -eq 1 ]; then
  files=$(git ls-files | grep -E "$pattern")
else
  base=$(git rev-parse --verify -q origin/main || git rev-parse --verify -q HEAD || true)
  files=$( { [ -n "$base" ] && git diff --name-only "$base"; git ls-files -o --exclude-standard; } |
           grep -E "$pattern" | sort -u)
fi
files=$(for f in $files; do [ -f "$f" ] && echo "$f"; done)
[ -z "$files" ] && { echo "lint.sh: no C++ files to check"; exit 0; }
status=0
if [ $mode = fix ]; then
  clang-format -i $files
else
  clang-format --dry-run -Werror $files || status=1
fi
# clang-tidy needs the compile database of a configured build (scripts/build.sh makes one).
if [ -f build/compile_commands.json ] && command -v clang-tidy >/dev/null; then
  cxx=$(echo "$files" | grep -E '\.cpp$' || true)
  [ -n "$cxx" ] && { clang-tidy -p build --quiet $cxx 2>/dev/null | grep -E 'warning:|error:' && status=1; }
else
  echo "lint.sh: no build/compile_commands.json; run scripts/build.sh for clang-tidy"
fi
[ $status -eq 0 ] && echo "lint.sh: clean"
exit $status

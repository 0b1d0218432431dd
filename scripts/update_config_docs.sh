#!/usr/bin/env bash
# Regenerates the key table of docs/config.md (everything after "## Keys") from the code's
# field lists: `sculpt list keys --markdown`. tests/unit/test_docs.cpp fails until this is run
# after a key is added, renamed or removed. The prose above "## Keys" is kept as written.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh" >/dev/null
doc="$root/docs/config.md"
tmp="$doc.tmp.$$"
sed '/^## Keys$/q' "$doc" >"$tmp"
echo >>"$tmp"
"$root/build/bin/sculpt" list keys --markdown >>"$tmp"
mv -f "$tmp" "$doc"
echo "update_config_docs.sh: $(grep -c '^| `' "$doc") keys in docs/config.md"

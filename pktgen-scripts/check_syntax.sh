#!/usr/bin/env bash
# Syntax check of the generator scripts, for CI (meson suite 'unit'): Pktgen
# and TRex are not Debian packages and do not run here, so the Lua scripts go
# through Debian's Lua 5.4 compiler (`luac5.4 -p`: parse only, writes nothing)
# and the TRex profiles through python3's py_compile (compiles, imports
# nothing: trex_stl_lib is not installed; bytecode goes to a temporary
# folder, not into the tree).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LUAC=${LUAC:-luac5.4}
PYTHON=${PYTHON:-/usr/bin/python3}

command -v "$LUAC" >/dev/null 2>&1 || { echo "check_syntax.sh: $LUAC not found (Debian: apt-get install lua5.4)" >&2; exit 1; }
command -v "$PYTHON" >/dev/null 2>&1 || { echo "check_syntax.sh: $PYTHON not found" >&2; exit 1; }

cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT

failed=0 checked=0
shopt -s nullglob
# One file per luac call: Debian's luac5.4 5.4.4 aborts ("double free") when
# given several files with -p.
for f in "$here"/*.lua; do
  checked=$((checked + 1))
  if "$LUAC" -p "$f"; then echo "ok   $f"; else echo "FAIL $f" >&2; failed=1; fi
done
for f in "$here"/trex/*.py; do
  checked=$((checked + 1))
  if PYTHONPYCACHEPREFIX=$cache "$PYTHON" -m py_compile "$f"; then echo "ok   $f"; else echo "FAIL $f" >&2; failed=1; fi
done
bash -n "$here/memif-bench.sh" && echo "ok   $here/memif-bench.sh" || { echo "FAIL $here/memif-bench.sh" >&2; failed=1; }
if [ "$checked" -lt 6 ]; then
  echo "check_syntax.sh: expected at least 3 Lua scripts and 3 TRex profiles, found $checked files" >&2
  failed=1
fi
exit "$failed"

#!/usr/bin/env bash
# Configures and builds moat.  Usage: scripts/build.sh [BUILD_DIR [cmake args...]]
# The first build on a machine also builds wolfSSL from Debian's source
# (about a minute); later builds reuse it from ~/.cache/moat.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-"$root/build"}
shift || true
"$root/scripts/setup.sh" --build
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build "$dir" -j"$(nproc)"

#!/usr/bin/env bash
# Frame time of the real memtools-gui window, rendering included, under Xvfb with Mesa's
# software OpenGL (llvmpipe), on a 10-million-sample session while the plot pans back and forth.
# Prints the app's frame-time lines (MEMTOOLS_GUI_FRAME_STATS=1); the criterion bench
# (cargo bench -p memtools-gui) gives the CPU side alone.
#
# Usage: scripts/frame-time.sh [SECONDS] [1|all]   (default 40 s, one process plotted; `all`
# plots all ten)
# Needs what scripts/screenshot.sh needs. Honours CARGO_TARGET_DIR.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-40}
which=${2:-1}
target=${CARGO_TARGET_DIR:-$root/target}
display=${FRAME_TIME_DISPLAY:-:96}
command -v Xvfb >/dev/null || { echo "frame-time: Xvfb is missing (cargo xtask setup installs it)" >&2; exit 1; }

cd "$root"
cargo build --release -p memtools-gui --bin memtools-gui --example big_store

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

"$target/release/examples/big_store" "$work/big.db"
Xvfb "$display" -screen 0 1440x900x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
sleep 1
DISPLAY=$display XDG_DATA_HOME=$work/data HOME=$work LIBGL_ALWAYS_SOFTWARE=1 MEMTOOLS_GUI_FRAME_STATS=$which \
    "$target/release/memtools-gui" "$work/big.db" 2>"$work/gui.log" &
pids+=($!)
sleep "$seconds"
grep "frame time" "$work/gui.log" || { echo "frame-time: no frame times; the app said:" >&2; cat "$work/gui.log" >&2; exit 1; }

#!/usr/bin/env bash
# The README's screenshot: memtools-gui's real window under Xvfb (Mesa's software OpenGL) on
# the VLT recording of revision 377208, whose long-lived tdcsarvControl leaks.
#
# Usage: scripts/screenshot.sh [OUT.png]   (default docs/screenshot-vlt-377208.png)
# Needs: xvfb, libgl1-mesa-dri, imagemagick, x11-utils (`cargo xtask setup` installs them).
# Honours CARGO_TARGET_DIR; builds memtools-gui and memtools-user in release.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/screenshot-vlt-377208.png}
data=${VLT_DATA:-$root/../shared/data/memorytools-vlt}
csv=$data/tdcsarv-dt0.5s-rev377208.csv.gz
target=${CARGO_TARGET_DIR:-$root/target}
display=${SCREENSHOT_DISPLAY:-:97}

for tool in Xvfb import xwininfo; do
    command -v "$tool" >/dev/null || { echo "screenshot: $tool is missing (cargo xtask setup installs it)" >&2; exit 1; }
done
[ -f "$csv" ] || { echo "screenshot: $csv is missing (set VLT_DATA to the recordings' directory)" >&2; exit 1; }

cd "$root"
cargo build --release -p memtools-gui -p memtools-user --bin memtools-gui --bin memtools-user

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

"$target/release/memtools-user" import "$csv" --store "$work/vlt.db" >/dev/null

Xvfb "$display" -screen 0 1440x900x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do xwininfo -display "$display" -root >/dev/null 2>&1 && break; sleep 0.1; done

# A fresh, empty settings directory: the picture shows the defaults, not someone's layout.
DISPLAY=$display XDG_DATA_HOME=$work/data HOME=$work LIBGL_ALWAYS_SOFTWARE=1 \
    "$target/release/memtools-gui" "$work/vlt.db" >"$work/gui.log" 2>&1 &
pids+=($!)

window=""
for _ in $(seq 100); do
    window=$(xwininfo -display "$display" -name memtools 2>/dev/null | awk '/Window id:/ {print $4}') && [ -n "$window" ] && break
    sleep 0.1
done
[ -n "$window" ] || { echo "screenshot: no window appeared; the app said:" >&2; cat "$work/gui.log" >&2; exit 1; }
# Reading and analysing the session takes a few seconds; then let a few frames settle.
sleep "${SCREENSHOT_WAIT:-8}"
import -display "$display" -window "$window" "$out"
echo "screenshot: wrote $out"

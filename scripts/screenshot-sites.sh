#!/usr/bin/env bash
# The viewer's "where it grows" panel in its real window under Xvfb (Mesa's software OpenGL), on
# a session recorded here with `record --sites` (the eBPF backend: needs root) of a small C
# program built with frame pointers that loads a config once (load_config, 16 MiB) and then
# leaks in grow_cache in each of twelve steps (tests, as a harness marks them) while churn mallocs
# and frees memory it reuses.
#
# Usage: scripts/screenshot-sites.sh [OUT.png]   (default docs/screenshot-sites.png)
# Needs: root, xvfb, libgl1-mesa-dri, imagemagick, x11-utils, cc (`cargo xtask setup`).
# Honours CARGO_TARGET_DIR and PROFILE (release, the default, or debug).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/screenshot-sites.png}
target=${CARGO_TARGET_DIR:-$root/target}
profile=${PROFILE:-release}
display=${SCREENSHOT_DISPLAY:-:96}

[ "$(id -u)" = 0 ] || { echo "screenshot-sites: record --sites needs root (the eBPF backend)" >&2; exit 1; }
for tool in Xvfb import xwininfo cc; do
    command -v "$tool" >/dev/null || { echo "screenshot-sites: $tool is missing (cargo xtask setup installs it)" >&2; exit 1; }
done

cd "$root"
flag=(--release)
[ "$profile" = debug ] && flag=()
cargo build "${flag[@]}" -p memtools-gui -p memtools-user --bin memtools-gui --bin memtools-user

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/cache.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *config, *kept[1024];
int nkept;
volatile long sink;

__attribute__((noinline)) void load_config(void) {
    config = malloc(16 << 20);
    memset(config, 1, 16 << 20);
}

__attribute__((noinline)) void grow_cache(void) {
    char *p = malloc(256 * 1024);
    memset(p, 1, 256 * 1024);
    kept[nkept++] = p;
}

__attribute__((noinline)) void churn(void) {
    for (int i = 0; i < 8; i++) {
        char *q = malloc(64 * 1024);
        memset(q, 2, 64 * 1024);
        sink += q[i];
        free(q);
    }
}

/* Marks each step as a test, as a test harness would (memtools' phases). */
static void phase(const char *what, int step) {
    const char *path = getenv("MEMTOOLS_PHASES");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f)
        return;
    fprintf(f, "%s step_%d\n", what, step);
    fclose(f);
}

int main(void) {
    load_config();
    for (int step = 0; step < 12; step++) {
        phase("begin", step);
        for (int i = 0; i < 8; i++) {
            grow_cache();
            churn();
            usleep(60000);
        }
        phase("end", step);
    }
    return config[1] + kept[nkept - 1][5] + (int)sink;
}
C
cc -O1 -g -fno-omit-frame-pointer -o "$work/cache" "$work/cache.c"
(cd "$work" && "$target/$profile/memtools-user" record --sites --store "$work/sites.db" -- ./cache) >"$work/record.log" 2>&1 || true
"$target/$profile/memtools-user" sites --store "$work/sites.db" --window all >&2

Xvfb "$display" -screen 0 1440x900x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do xwininfo -display "$display" -root >/dev/null 2>&1 && break; sleep 0.1; done

DISPLAY=$display XDG_DATA_HOME=$work/data HOME=$work LIBGL_ALWAYS_SOFTWARE=1 \
    "$target/$profile/memtools-gui" "$work/sites.db" >"$work/gui.log" 2>&1 &
pids+=($!)

window=""
for _ in $(seq 100); do
    window=$(xwininfo -display "$display" -name memtools 2>/dev/null | awk '/Window id:/ {print $4}') && [ -n "$window" ] && break
    sleep 0.1
done
[ -n "$window" ] || { echo "screenshot-sites: no window appeared; the app said:" >&2; cat "$work/gui.log" >&2; exit 1; }
sleep "${SCREENSHOT_WAIT:-8}"
import -display "$display" -window "$window" "$out"
echo "screenshot-sites: wrote $out"

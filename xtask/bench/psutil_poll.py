"""memorytools' way of polling, for `cargo xtask bench recorder` to compare against.

Every interval: walk psutil.process_iter(), keep the processes being followed, read
memory_info() in a oneshot() and store it in a dict per pid, as memorytools'
MemorySnapper.take_memory_snapshot() does (its CCS mode, which filters to the environment's
pids). Prints the CPU time this process spent polling (user + system), after start-up.
"""

import argparse
import datetime
import json
import resource
import time

import psutil


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--interval", type=float, required=True, help="seconds")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--pids", required=True, help="comma-separated pids to follow")
    args = parser.parse_args()
    followed = {int(p) for p in args.pids.split(",") if p}

    data = {}
    samples = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < args.duration:
        now = datetime.datetime.now()
        for p in psutil.process_iter():
            if p.pid not in followed:
                continue
            try:
                with p.oneshot():
                    vms = p.memory_info().vms
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            data.setdefault(p.pid, {})[now] = vms
            samples += 1
        tick += 1
        # Ticks on a fixed grid, as our recorder keeps them (memorytools sleeps after the work,
        # which drifts and would flatter it by polling less often).
        delay = start + tick * args.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"cpu_s": cpu, "wall_s": time.monotonic() - start, "samples": samples}))


if __name__ == "__main__":
    main()

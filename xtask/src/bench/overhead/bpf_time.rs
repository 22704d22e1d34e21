//! What the recorder's eBPF programs themselves cost, as the kernel counts it: with
//! `kernel.bpf_stats_enabled`, each program's `run_time_ns` (in /proc/PID/fdinfo of the
//! recorder's program descriptors) adds up the time it ran, on whichever task it ran. The
//! difference over a workload's run is the time the hooks took from it and from everything
//! else that ran meanwhile: an upper bound on what the workload paid for them, free of the
//! run-to-run noise of timing the workload itself. Not counted: the kernel's dispatch to a
//! program (a trampoline or tracepoint call, tens of nanoseconds per run).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// The kernel's program statistics turned on while it lives; the old setting put back after.
pub(crate) struct StatsEnabled(Option<String>);

impl StatsEnabled {
    pub fn new() -> StatsEnabled {
        let old = std::fs::read_to_string(STATS).ok();
        if std::fs::write(STATS, "1").is_err() {
            eprintln!("xtask: cannot turn on {STATS}: the eBPF programs' own time is left out");
            return StatsEnabled(None);
        }
        StatsEnabled(old)
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(STATS, old.trim());
        }
    }
}

/// The total run time, ns, of the eBPF programs process `pid` holds (each program once).
pub(crate) fn programs_time(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let mut programs: BTreeMap<u64, u64> = BTreeMap::new();
    for entry in dir.flatten() {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(ns)) = (field("prog_id:"), field("run_time_ns:")) {
            programs.insert(id, ns);
        }
    }
    (!programs.is_empty()).then(|| programs.values().sum())
}

/// Reads a process's programs' time every 10 ms until it exits or [`Watch::finish`]: the
/// recorder of a recorded workload ends with it, its programs with it.
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(Option<u64>, Option<u64>)>>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    pub fn start(pid: u32) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((None, None)));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(ns) = programs_time(pid) else {
                    // Not loaded yet, or gone: keep what was seen.
                    if v.lock().is_ok_and(|g| g.0.is_some()) && !alive(pid) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if let Ok(mut g) = v.lock() {
                    g.0.get_or_insert(ns);
                    g.1 = Some(ns);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Watch {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// The programs' time between the first and the last look, ns.
    pub fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let g = self.seen.lock().ok()?;
        Some(g.1?.saturating_sub(g.0?))
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

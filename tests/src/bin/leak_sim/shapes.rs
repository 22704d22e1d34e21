//! The single-process shapes. Each returns the memory it still holds, so `--hold` can keep it
//! resident after the shape ends.

use crate::mem::{Region, mark_ready, run_ticks, sleep_until};
use crate::opts::Opts;
use anyhow::Result;
use std::time::Instant;

/// `--step` more every tick: the plain leak.
pub fn linear(o: &Opts) -> Result<Vec<Region>> {
    let mut held = Vec::new();
    run_ticks(o, |_| {
        held.push(Region::new(o.kind, o.step)?);
        Ok(())
    })?;
    Ok(held)
}

/// `--step` more every `--hold-ticks` ticks (the first on tick 0): a leak that looks flat in any
/// window shorter than a stair.
pub fn steps(o: &Opts) -> Result<Vec<Region>> {
    let mut held = Vec::new();
    run_ticks(o, |k| {
        if k % o.hold_ticks == 0 {
            held.push(Region::new(o.kind, o.step)?);
        }
        Ok(())
    })?;
    Ok(held)
}

/// Grows by `--step` per tick until `--peak` above the floor, then on the next tick frees back
/// to the floor and raises it by `--floor-growth`: a garbage collector, leaking or not.
pub fn sawtooth(o: &Opts) -> Result<Vec<Region>> {
    let mut floor = Vec::new();
    let mut above = Vec::new();
    let mut above_bytes = 0u64;
    run_ticks(o, |_| {
        if above_bytes >= o.peak {
            above.clear();
            above_bytes = 0;
            if o.floor_growth > 0 {
                floor.push(Region::new(o.kind, o.floor_growth)?);
            }
        } else {
            // The last tooth step is clipped so the peak is exact.
            let n = o.step.min(o.peak - above_bytes);
            above.push(Region::new(o.kind, n)?);
            above_bytes += n;
        }
        Ok(())
    })?;
    floor.append(&mut above);
    Ok(floor)
}

/// Holds `--base`; once, at `--at`, adds `--step` for `--spike-len`: what a detector must not
/// call a leak.
pub fn spike(o: &Opts) -> Result<Vec<Region>> {
    let start = Instant::now();
    let base = Region::new(o.kind, o.base)?;
    mark_ready(o)?;
    sleep_until(start + o.at);
    let spike = Region::new(o.kind, o.step)?;
    sleep_until(start + o.at + o.spike_len);
    drop(spike);
    sleep_until(start + o.duration);
    Ok(vec![base])
}

/// `--base` once, held for `--duration`: the clean process. Churn and reuse children run this.
pub fn flat(o: &Opts) -> Result<Vec<Region>> {
    let start = Instant::now();
    let base = Region::new(o.kind, o.base)?;
    mark_ready(o)?;
    sleep_until(start + o.duration);
    Ok(vec![base])
}

/// Holds `--base` (and says `ok` once it does), then carries out `keep SIZE` / `use SIZE` lines from stdin, answering `ok`
/// to each once its memory is touched (or released), until end of input: a service whose
/// memory a test suite drives, test by test.
pub fn serve(o: &Opts) -> Result<Vec<Region>> {
    use anyhow::{Context, bail};
    use std::io::{BufRead, Write};
    let mut held = vec![Region::new(o.kind, o.base)?];
    // Threads and descriptors kept by `thread` and `fd`: until the process exits.
    let mut threads = Vec::new();
    let mut files = Vec::new();
    mark_ready(o)?;
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    // Loaded: said once, before the first command.
    writeln!(out, "ok")
        .and_then(|()| out.flush())
        .context("answering")?;
    for line in stdin.lock().lines() {
        let line = line.context("reading a command")?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("keep"), Some(size)) => {
                held.push(Region::new(o.kind, crate::opts::parse_size(size)?)?)
            }
            (Some("use"), Some(size)) => drop(Region::new(o.kind, crate::opts::parse_size(size)?)?),
            (Some("wait"), Some(d)) => std::thread::sleep(
                humantime::parse_duration(d).with_context(|| format!("`wait {d}`"))?,
            ),
            (Some("thread"), None) => threads.push(crate::counts::Worker::start()?),
            (Some("use-thread"), None) => crate::counts::Worker::start()?.join(),
            (Some("fd"), None) => files.push(crate::counts::open_one()?),
            (Some("use-fd"), None) => drop(crate::counts::open_one()?),
            (None, _) => continue,
            _ => bail!(
                "unknown command {line:?} (keep SIZE, use SIZE, thread, use-thread, fd, use-fd \
                 or wait DUR)"
            ),
        }
        writeln!(out, "ok")
            .and_then(|()| out.flush())
            .context("answering")?;
    }
    // Kept to the end, through --hold: the threads stay parked, the descriptors open.
    std::mem::forget(threads);
    std::mem::forget(files);
    Ok(held)
}

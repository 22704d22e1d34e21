//! JSON lines export: one sample per line, every metric under its data-model name.

use std::io::Write;

use serde::Serialize;

use crate::model::{Metric, Sample};
use crate::store::{ForEachError, ProcessRow, Store};
use crate::units;

#[derive(Serialize)]
struct Line<'a> {
    pid: u32,
    /// Nanoseconds since boot (recordings) or first sample time (imports): with `pid`, the
    /// process's identity.
    start_time: u64,
    name: &'a str,
    time: String,
    t_ns: i64,
    rss_anon: Option<u64>,
    rss_file: Option<u64>,
    rss_shmem: Option<u64>,
    swap: Option<u64>,
    vm_size: Option<u64>,
    page_faults: Option<u64>,
    mmap_calls: Option<u64>,
    munmap_calls: Option<u64>,
    brk_calls: Option<u64>,
    mapped_bytes: Option<u64>,
    unmapped_bytes: Option<u64>,
    threads: Option<u64>,
    fds: Option<u64>,
}

/// A line of one metric (`export --metric NAME`): the identity, the time and that value.
#[derive(Serialize)]
struct OneLine<'a> {
    pid: u32,
    start_time: u64,
    name: &'a str,
    time: String,
    t_ns: i64,
    #[serde(flatten)]
    value: std::collections::BTreeMap<&'static str, u64>,
}

fn line<'a>(p: &'a ProcessRow, s: &Sample) -> Line<'a> {
    let m = &s.metrics;
    Line {
        pid: p.info.key.pid,
        start_time: p.info.key.start_time,
        name: &p.info.name,
        time: units::rfc3339(s.time),
        t_ns: s.time,
        rss_anon: m.rss_anon,
        rss_file: m.rss_file,
        rss_shmem: m.rss_shmem,
        swap: m.swap,
        vm_size: m.vm_size,
        page_faults: m.page_faults,
        mmap_calls: m.mmap_calls,
        munmap_calls: m.munmap_calls,
        brk_calls: m.brk_calls,
        mapped_bytes: m.mapped_bytes,
        unmapped_bytes: m.unmapped_bytes,
        threads: m.threads,
        fds: m.fds,
    }
}

/// Writes every sample of a session, one JSON object per line; absent metrics are `null`.
/// With `metric`, each line holds that metric alone, and samples without it are left out.
pub fn export(
    store: &Store,
    session: i64,
    metric: Option<Metric>,
    out: &mut dyn Write,
) -> Result<u64, ForEachError> {
    let mut rows = 0;
    store.for_each_sample(session, |p, s| {
        match metric {
            None => serde_json::to_writer(&mut *out, &line(p, s))?,
            Some(m) => {
                let Some(v) = s.metrics.get(m) else {
                    return Ok(());
                };
                let line = OneLine {
                    pid: p.info.key.pid,
                    start_time: p.info.key.start_time,
                    name: &p.info.name,
                    time: units::rfc3339(s.time),
                    t_ns: s.time,
                    value: [(m.name(), v)].into_iter().collect(),
                };
                serde_json::to_writer(&mut *out, &line)?;
            }
        }
        out.write_all(b"\n")?;
        rows += 1;
        Ok(())
    })?;
    out.flush()?;
    Ok(rows)
}

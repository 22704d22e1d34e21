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
    #[serde(flatten)]
    metrics: serde_json::Map<String, serde_json::Value>,
}

fn line<'a>(p: &'a ProcessRow, s: &Sample) -> Line<'a> {
    let metrics = Metric::STORED
        .into_iter()
        .map(|m| (m.name().to_string(), s.metrics.get(m).map_or(serde_json::Value::Null, Into::into)))
        .collect();
    Line {
        pid: p.info.key.pid,
        start_time: p.info.key.start_time,
        name: &p.info.name,
        time: units::rfc3339(s.time),
        t_ns: s.time,
        metrics,
    }
}

/// Writes every sample of a session, one JSON object per line; absent metrics are `null`.
pub fn export(store: &Store, session: i64, out: &mut dyn Write) -> Result<u64, ForEachError> {
    let mut rows = 0;
    store.for_each_sample(session, |p, s| {
        serde_json::to_writer(&mut *out, &line(p, s))?;
        out.write_all(b"\n")?;
        rows += 1;
        Ok(())
    })?;
    out.flush()?;
    Ok(rows)
}

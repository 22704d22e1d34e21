//! Reading sessions, processes and series back out of the store.

use rusqlite::{Row, params};

use super::{Store, StoreError};
use crate::model::{
    BackendKind, ExitStatus, History, Lost, Metric, Metrics, ProcessInfo, ProcessKey, Sample,
    TimeNs,
};

/// A session as listed by `sessions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id: i64,
    pub host: String,
    pub kernel: String,
    /// The backend's stored name (`procfs`, `ebpf`, `import:memorytools`).
    pub backend: String,
    pub backend_reason: String,
    pub interval_ns: Option<i64>,
    pub command: Option<String>,
    pub source: Option<String>,
    pub start: TimeNs,
    /// None while recording, or when the recorder was killed.
    pub end: Option<TimeNs>,
    pub last_sample: Option<TimeNs>,
    pub exit: Option<ExitStatus>,
    pub processes: u64,
    pub samples: u64,
    /// The recording machine's memory, when known.
    pub mem_total: Option<u64>,
    /// What the recording could not record.
    pub lost: Lost,
    /// Wall clock minus monotonic clock at the start (recordings only), to place a process's
    /// start time (since boot) on the session's clock.
    pub monotonic_offset_ns: Option<i64>,
    /// Why the recording stopped being written before the end (a full disk, the store
    /// removed); the samples before are kept.
    pub cut_short: Option<String>,
    /// How the recorded command's process tree was held: its cgroup, or the recorder as
    /// subreaper.
    pub tree: Option<String>,
    /// The recording machine's `kernel.threads-max` and `kernel.pid_max`, when recorded: what
    /// bounds a process's threads where no cgroup does.
    pub threads_max: Option<u64>,
    pub pid_max: Option<u64>,
}

/// How a session ended, as `sessions`, `show` and their JSON say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Recorded to its end (or imported).
    Finished,
    /// The store could not be written any more; what came before is kept.
    CutShort,
    /// No end: still being recorded, or the recorder was killed.
    Unfinished,
}

impl SessionState {
    /// The word tables use.
    pub fn name(self) -> &'static str {
        match self {
            SessionState::Finished => "finished",
            SessionState::CutShort => "cut short",
            SessionState::Unfinished => "unfinished",
        }
    }
}

impl SessionRow {
    /// Whether it finished, was cut short, or has no end (yet).
    pub fn state(&self) -> SessionState {
        match (&self.cut_short, self.end) {
            (Some(_), _) => SessionState::CutShort,
            (None, Some(_)) => SessionState::Finished,
            (None, None) => SessionState::Unfinished,
        }
    }

    /// The session's length: to its end, or to its last sample when it never ended.
    pub fn duration_ns(&self) -> Option<i64> {
        self.end
            .or(self.last_sample)
            .map(|e| (e - self.start).max(0))
    }

    /// The metric analyses and tables use by default: virtual size for memorytools imports
    /// (the only thing it recorded), resident memory for our own recordings.
    pub fn default_metric(&self) -> Metric {
        match BackendKind::from_name(&self.backend) {
            Some(BackendKind::MemorytoolsImport) => Metric::VmSize,
            _ => Metric::Rss,
        }
    }

    /// Whether its samples were stored only when they changed (the eBPF backend): a reader
    /// holds each value until the next sample ([`as_recorded`]).
    pub fn change_only(&self) -> bool {
        BackendKind::from_name(&self.backend) == Some(BackendKind::Ebpf)
    }

    /// What was recorded: the command, or the imported file.
    pub fn what(&self) -> &str {
        self.command
            .as_deref()
            .or(self.source.as_deref())
            .unwrap_or("")
    }
}

/// A phase a test harness marked; `end` is None when it never ended (the run was cut short).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Phase {
    pub name: String,
    pub begin: TimeNs,
    pub end: Option<TimeNs>,
}

/// A process of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessRow {
    pub id: i64,
    pub info: ProcessInfo,
    pub exit: Option<TimeNs>,
    /// Its cgroup's memory limit, when one applied.
    pub memory_limit: Option<u64>,
    /// Its peak resident memory as the kernel kept it, when the recorder was told (the eBPF
    /// backend, at exit).
    pub peak_rss: Option<u64>,
    /// Its address-space limit (RLIMIT_AS), when one was set.
    pub address_space_limit: Option<u64>,
    /// Its open-file limit (RLIMIT_NOFILE), when recorded.
    pub open_files_limit: Option<u64>,
    /// Its cgroup's task limit (`pids.max`), when one was set.
    pub tasks_limit: Option<u64>,
}

/// The columns [`process_row`] reads, in order.
pub(super) const PROCESS_COLUMNS: &str = "id, pid, start_time, ppid, name, cmdline, exit_ns, memory_limit, address_space_limit, peak_rss, open_files_limit, tasks_limit";

/// The columns [`sample_row`] reads, in order: the time, then every stored metric.
pub(super) fn sample_columns() -> String {
    let mut cols = String::from("t_ns");
    for m in Metric::STORED {
        cols.push_str(", ");
        cols.push_str(metric_sql(m));
    }
    cols
}

const SESSION_COLUMNS: &str = "s.id, s.host, s.kernel, s.backend, s.backend_reason, s.interval_ns, s.command, s.source, s.start_ns, s.end_ns, s.last_sample_ns, s.exit_status, s.exit_signal, (SELECT COUNT(*) FROM processes p WHERE p.session_id = s.id), s.sample_count, s.mem_total, s.monotonic_offset_ns, s.cut_short, s.tree, s.processes_lost, s.events_lost, s.threads_max, s.pid_max";

fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let code: Option<i32> = r.get(11)?;
    let signal: Option<i32> = r.get(12)?;
    Ok(SessionRow {
        id: r.get(0)?,
        host: r.get(1)?,
        kernel: r.get(2)?,
        backend: r.get(3)?,
        backend_reason: r.get(4)?,
        interval_ns: r.get(5)?,
        command: r.get(6)?,
        source: r.get(7)?,
        start: r.get(8)?,
        end: r.get(9)?,
        last_sample: r.get(10)?,
        exit: code
            .map(ExitStatus::Code)
            .or(signal.map(ExitStatus::Signal)),
        processes: r.get::<_, i64>(13)? as u64,
        samples: r.get::<_, i64>(14)? as u64,
        mem_total: r.get::<_, Option<i64>>(15)?.map(|m| m as u64),
        monotonic_offset_ns: r.get(16)?,
        cut_short: r.get(17)?,
        tree: r.get(18)?,
        lost: Lost {
            processes: r.get::<_, i64>(19)? as u64,
            events: r.get::<_, i64>(20)? as u64,
        },
        threads_max: r.get::<_, Option<i64>>(21)?.map(|m| m as u64),
        pid_max: r.get::<_, Option<i64>>(22)?.map(|m| m as u64),
    })
}

pub(super) fn process_row(r: &Row<'_>) -> rusqlite::Result<ProcessRow> {
    Ok(ProcessRow {
        id: r.get(0)?,
        info: ProcessInfo {
            key: ProcessKey {
                pid: r.get(1)?,
                start_time: r.get::<_, i64>(2)? as u64,
            },
            ppid: r.get(3)?,
            name: r.get(4)?,
            cmdline: r.get(5)?,
        },
        exit: r.get(6)?,
        memory_limit: r.get::<_, Option<i64>>(7)?.map(|m| m as u64),
        address_space_limit: r.get::<_, Option<i64>>(8)?.map(|m| m as u64),
        peak_rss: r.get::<_, Option<i64>>(9)?.map(|m| m as u64),
        open_files_limit: r.get::<_, Option<i64>>(10)?.map(|m| m as u64),
        tasks_limit: r.get::<_, Option<i64>>(11)?.map(|m| m as u64),
    })
}

/// The SQL expression of a metric over the `samples` table.
pub(super) fn metric_sql(metric: Metric) -> &'static str {
    match metric {
        Metric::Rss => "(rss_anon + rss_file + rss_shmem)",
        Metric::RssAnon => "rss_anon",
        Metric::RssFile => "rss_file",
        Metric::RssShmem => "rss_shmem",
        Metric::Swap => "swap",
        Metric::VmSize => "vm_size",
        Metric::PageFaults => "page_faults",
        Metric::MmapCalls => "mmap_calls",
        Metric::MunmapCalls => "munmap_calls",
        Metric::BrkCalls => "brk_calls",
        Metric::MappedBytes => "mapped_bytes",
        Metric::UnmappedBytes => "unmapped_bytes",
        Metric::Threads => "threads",
        Metric::Fds => "fds",
    }
}

impl Store {
    /// Every session, newest first.
    pub fn sessions(&self) -> Result<Vec<SessionRow>, StoreError> {
        let sql =
            format!("SELECT {SESSION_COLUMNS} FROM sessions s ORDER BY s.start_ns DESC, s.id DESC");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], session_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// One session by id.
    pub fn session(&self, id: i64) -> Result<SessionRow, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = ?1");
        self.conn
            .query_row(&sql, [id], session_row)
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => StoreError::NoSuchSession {
                    path: self.path.clone(),
                    id,
                },
                e => self.err(e),
            })
    }

    /// A session's processes, in the order they were first seen.
    pub fn processes(&self, session: i64) -> Result<Vec<ProcessRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, pid, start_time, ppid, name, cmdline, exit_ns, memory_limit, address_space_limit, peak_rss, open_files_limit, tasks_limit FROM processes WHERE session_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([session], process_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The newest session before `before` that recorded the same command and whose command
    /// exited 0: what `--baseline latest-passing` compares with.
    pub fn latest_passing(&self, command: &str, before: i64) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT id FROM sessions WHERE command = ?1 AND id < ?2 AND exit_status = 0 ORDER BY start_ns DESC, id DESC LIMIT 1",
                params![command, before],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// A session's phases, in the order they began.
    pub fn phases(&self, session: i64) -> Result<Vec<Phase>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, begin_ns, end_ns FROM phases WHERE session_id = ?1 ORDER BY begin_ns, id")
            .map_err(|e| self.err(e))?;
        stmt.query_map([session], |r| {
            Ok(Phase {
                name: r.get(0)?,
                begin: r.get(1)?,
                end: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| self.err(e))
    }

    /// Every process's history of one metric in a session, in time order; samples where the
    /// metric is absent are left out. Processes appear in the order of [`Store::processes`].
    ///
    /// The eBPF backend stores a process only when its counters changed: its histories are
    /// given back on the session's sampling grid, each value held until the next sample and
    /// the last until the process exited or the session ended, as the /proc backend would have
    /// recorded them. Readers (show, detect, the GUI) see one kind of history.
    pub fn series(
        &self,
        session: i64,
        metric: Metric,
    ) -> Result<Vec<(ProcessRow, History)>, StoreError> {
        let row = self.session(session)?;
        let processes = self.processes(session)?;
        let sql = format!(
            // `IN (?1)`, not `= ?1`: SQLite re-prepares an `= ?1 ... ORDER BY` statement at each
            // new binding, which made this one query per process cost three times as much.
            "SELECT t_ns, {m} FROM samples WHERE process_id IN (?1) AND {m} IS NOT NULL ORDER BY t_ns",
            m = metric_sql(metric)
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(processes.len());
        for p in processes {
            let points = stmt
                .query_map([p.id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err(e))?;
            let points = as_recorded(&row, &p, points);
            out.push((p, points));
        }
        Ok(out)
    }

    /// Whether a session recorded a metric at all (older recordings and imports have no
    /// threads or descriptors): looks at the first few samples of each process, not all.
    pub fn has_metric(&self, session: i64, metric: Metric) -> Result<bool, StoreError> {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM processes p WHERE p.session_id = ?1 AND EXISTS (SELECT 1 FROM (SELECT {m} AS v FROM samples WHERE process_id = p.id ORDER BY t_ns LIMIT 4) WHERE v IS NOT NULL))",
            m = metric_sql(metric)
        );
        self.conn
            .query_row(&sql, [session], |r| r.get::<_, bool>(0))
            .map_err(|e| self.err(e))
    }

    /// Streams every sample of a session with all its metrics, process by process in time
    /// order, without holding the session in memory (for exports).
    pub fn for_each_sample(
        &self,
        session: i64,
        mut f: impl FnMut(&ProcessRow, &Sample) -> std::io::Result<()>,
    ) -> Result<(), ForEachError> {
        let processes = self.processes(session)?;
        let mut stmt = self
            .conn
            .prepare("SELECT t_ns, rss_anon, rss_file, rss_shmem, swap, vm_size, page_faults, mmap_calls, munmap_calls, brk_calls, mapped_bytes, unmapped_bytes, threads, fds FROM samples WHERE process_id IN (?1) ORDER BY t_ns")
            .map_err(|e| self.err(e))?;
        for p in &processes {
            let mut rows = stmt.query(params![p.id]).map_err(|e| self.err(e))?;
            while let Some(r) = rows.next().map_err(|e| self.err(e))? {
                let sample = sample_row(r).map_err(|e| self.err(e))?;
                f(p, &sample)?;
            }
        }
        Ok(())
    }
}

/// Why streaming samples stopped: the store, or the consumer's output.
#[derive(Debug, thiserror::Error)]
pub enum ForEachError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A process's stored samples as every reader should see them: for a change-only (eBPF)
/// session, each value held on the session's sampling grid until the next sample and the last
/// until the process exited or the session ended; other sessions as stored. [`Store::series`]
/// applies it; a reader that fetches samples itself (the GUI's chunked and live reads) calls it.
pub fn as_recorded(session: &SessionRow, process: &ProcessRow, points: History) -> History {
    match session
        .interval_ns
        .filter(|&i| i > 0 && session.change_only())
    {
        Some(step) => {
            let until = process.exit.or(session.end).or(session.last_sample);
            hold_on_grid(&points, step, until)
        }
        None => points,
    }
}

/// The most points one held history may grow to; a longer one is left as stored.
const MAX_HELD_POINTS: i64 = 20_000_000;

/// A change-only history on a grid of `step`: each value repeated every `step` until the next
/// sample, the last one until `until`. Stored samples are kept as they are.
fn hold_on_grid(points: &[(TimeNs, u64)], step: i64, until: Option<TimeNs>) -> History {
    let (Some(&(first, _)), Some(&(last, last_value))) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let end = until.unwrap_or(last).max(last);
    if (end - first) / step > MAX_HELD_POINTS {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(((end - first) / step) as usize + points.len() + 1);
    for pair in points.windows(2) {
        let ((t0, v), (t1, _)) = (pair[0], pair[1]);
        out.push((t0, v));
        // Fill to half a step before the next sample, so no two points crowd together.
        let mut t = t0 + step;
        while t < t1 - step / 2 {
            out.push((t, v));
            t += step;
        }
    }
    out.push((last, last_value));
    let mut t = last + step;
    while t <= end {
        out.push((t, last_value));
        t += step;
    }
    out
}

/// A sample from a row whose columns are `t_ns` then [`Metric::STORED`] in order.
pub(super) fn sample_row(r: &Row<'_>) -> rusqlite::Result<Sample> {
    let mut metrics = Metrics::default();
    for (i, m) in Metric::STORED.into_iter().enumerate() {
        let v: Option<i64> = r.get(i + 1)?;
        metrics.set(m, v.map(|v| v as u64));
    }
    Ok(Sample {
        time: r.get(0)?,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::hold_on_grid;

    #[test]
    fn a_change_only_history_is_held_on_the_grid_until_the_end() {
        let held = hold_on_grid(&[(0, 5), (35, 7), (40, 9)], 10, Some(62));
        assert_eq!(
            held,
            vec![(0, 5), (10, 5), (20, 5), (35, 7), (40, 9), (50, 9), (60, 9)]
        );
        // Nothing to hold without samples; no end given holds to the last sample.
        assert_eq!(hold_on_grid(&[], 10, Some(100)), vec![]);
        assert_eq!(hold_on_grid(&[(3, 1)], 10, None), vec![(3, 1)]);
    }
}

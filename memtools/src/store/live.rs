//! Reading a session as it is recorded, in pieces: for the GUI, which reads a big session in
//! chunks (so it can show progress and stay cancellable) and follows a session still being
//! recorded (only the samples newer than those it has); for the terminal view, which follows
//! every process of a session and shows several metrics of each; and for the exporter, which
//! follows the processes still running (their newest samples, every second or so).

use std::sync::OnceLock;

use super::reader::{
    PROCESS_COLUMNS, ProcessRow, metric_sql, process_row, sample_columns, sample_row,
};
use super::{Store, StoreError};
use crate::model::{Metric, Sample, TimeNs};

impl Store {
    /// Up to `limit` samples of one process (a [`super::ProcessRow::id`]) with `metric` present,
    /// strictly after `after` (from the start when `None`), in time order. Reading again from
    /// the last time returned gives the next chunk; an empty result means none are left yet.
    pub fn process_series_after(
        &self,
        process_id: i64,
        metric: Metric,
        after: Option<TimeNs>,
        limit: usize,
    ) -> Result<Vec<(TimeNs, u64)>, StoreError> {
        // `IN (?1)` and a literal limit, as in process_samples_after: with `= ?1` and
        // `LIMIT ?3` SQLite re-prepares the statement at every new binding.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT t_ns, {m} FROM samples WHERE process_id IN (?1) AND t_ns > ?2 AND {m} IS NOT NULL ORDER BY t_ns LIMIT {limit}",
            m = metric_sql(metric)
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        stmt.query_map(
            rusqlite::params![process_id, after.unwrap_or(i64::MIN)],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)),
        )
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| self.err(e))
    }

    /// Up to `limit` samples of one process with every stored metric (absent ones `None`),
    /// strictly after `after` (from the start when `None`), in time order: one query where a
    /// reader that shows several metrics of a process would need one per metric. The columns
    /// come from [`Metric::STORED`], so a metric added to the model is read here too.
    pub fn process_samples_after(
        &self,
        process_id: i64,
        after: Option<TimeNs>,
        limit: usize,
    ) -> Result<Vec<Sample>, StoreError> {
        static COLUMNS: OnceLock<String> = OnceLock::new();
        let columns = COLUMNS.get_or_init(|| {
            let columns: Vec<&str> = Metric::STORED.iter().map(|&m| metric_sql(m)).collect();
            columns.join(", ")
        });
        // `IN (?1)` and a literal limit, not `= ?1` and `LIMIT ?3`: with those, SQLite 3.54
        // prepares the statement again at every new binding (it may plan the ORDER BY or the
        // LIMIT differently for another value), which made a query cost three times as much.
        let sql = format!(
            "SELECT t_ns, {columns} FROM samples WHERE process_id IN (?1) AND t_ns > ?2 ORDER BY t_ns LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        stmt.query_map(
            rusqlite::params![process_id, after.unwrap_or(i64::MIN)],
            sample_row,
        )
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| self.err(e))
    }

    /// Runs `f` in one read transaction: every query in it sees the same state of the store,
    /// and the locks and the page cache check that SQLite does per transaction are done once
    /// rather than per query. For a reader that makes many small queries in a row (the
    /// terminal view reads each process's new samples once a second).
    pub fn read_transaction<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.err(e))?;
        let result = f(self);
        // Nothing to commit; ending it lets the recorder's checkpoints move past it.
        let ended = self.conn.execute_batch("ROLLBACK").map_err(|e| self.err(e));
        let value = result?;
        ended.map(|()| value)
    }
}

impl Store {
    /// A session's processes that have not exited (as far as its recorder has said), in the
    /// order they were first seen. An index holds just those, so this stays quick in a session
    /// of millions of processes.
    pub fn running_processes(&self, session: i64) -> Result<Vec<ProcessRow>, StoreError> {
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = SQL.get_or_init(|| {
            format!(
                "SELECT {PROCESS_COLUMNS} FROM processes WHERE session_id = ?1 AND exit_ns IS NULL ORDER BY id"
            )
        });
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.query_map([session], process_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))
    }

    /// The newest sample of one process at or before `at`: its value then, in a change-only
    /// (eBPF) session where an unchanged process stores nothing.
    pub fn sample_at_or_before(
        &self,
        process_id: i64,
        at: TimeNs,
    ) -> Result<Option<Sample>, StoreError> {
        use rusqlite::OptionalExtension;
        static SQL: OnceLock<String> = OnceLock::new();
        let sql = SQL.get_or_init(|| {
            format!(
                "SELECT {} FROM samples WHERE process_id = ?1 AND t_ns <= ?2 ORDER BY t_ns DESC LIMIT 1",
                sample_columns()
            )
        });
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        stmt.query_row(rusqlite::params![process_id, at], sample_row)
            .optional()
            .map_err(|e| self.err(e))
    }
}

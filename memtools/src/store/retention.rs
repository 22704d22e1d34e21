//! Retention: a long-running recorder (`serve`) keeps its store bounded by deleting what is
//! older than its retention, without ever holding up the recorder.
//!
//! Only sessions marked with a retention ([`Store::set_retention`]) are pruned: a store shared
//! with recordings a user keeps (CI runs, imports) loses none of them. Pruning runs on its own
//! connection, in transactions of at most [`Pace::batch`] rows with a pause between them, so
//! the recorder's writer, which needs the same write lock every commit, waits a few
//! milliseconds at most (the `retention` benchmark measures it). The newest sample of every
//! process is kept while its process row is: for a change-only (eBPF) session it is the
//! process's current value.

use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::model::TimeNs;

/// How pruning shares the write lock with a recorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// Rows deleted per transaction at most.
    pub batch: usize,
    /// Pause after each transaction, so the recorder always finds the lock free soon.
    pub pause: Duration,
}

impl Default for Pace {
    /// 500 rows (about a millisecond of deleting) every 10 ms: a week of samples of 500
    /// processes at 1 s (300 million rows) goes in well under a day, and the recorder never
    /// waits for more than one batch.
    fn default() -> Self {
        Pace {
            batch: 500,
            pause: Duration::from_millis(10),
        }
    }
}

/// What one pass of [`Store::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub samples: u64,
    pub processes: u64,
    pub sessions: u64,
    /// The pass was stopped before it was done.
    pub interrupted: bool,
}

impl Store {
    /// Keeps a session's samples for `retain` only (`None`: for ever, the default of every
    /// session): [`Store::prune`] deletes what is older.
    pub fn set_retention(&self, session: i64, retain: Option<Duration>) -> Result<(), StoreError> {
        let ns = retain.map(|r| i64::try_from(r.as_nanos()).unwrap_or(i64::MAX));
        self.conn
            .execute(
                "UPDATE sessions SET retain_ns = ?2 WHERE id = ?1",
                params![session, ns],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The retention a session was marked with, if any.
    pub fn retention(&self, session: i64) -> Result<Option<Duration>, StoreError> {
        let ns: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT retain_ns FROM sessions WHERE id = ?1",
                [session],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(ns.flatten().map(|n| Duration::from_nanos(n.max(0) as u64)))
    }

    /// One pass of retention over every session marked with one: deletes their samples older
    /// than `cutoff` (each process's newest kept while its row is), then the processes that
    /// ended before it with nothing newer, then the sessions left empty. `recording` is the
    /// session being recorded now, which stays whatever it holds. Runs in transactions of at
    /// most `pace.batch` rows with `pace.pause` between them, and returns early (with what it did
    /// so far) when `stop` says so.
    pub fn prune(
        &self,
        cutoff: TimeNs,
        recording: Option<i64>,
        pace: &Pace,
        stop: impl Fn() -> bool,
    ) -> Result<Pruned, StoreError> {
        let mut done = Pruned::default();
        let batch = pace.batch.max(1) as i64;
        // Processes with a sample older than the cutoff: one index seek each, read outside any
        // write transaction (WAL: it blocks no one).
        let candidates: Vec<(i64, i64)> = self
            .conn
            .prepare(
                "SELECT p.id, p.session_id FROM processes p JOIN sessions s ON s.id = p.session_id
                 WHERE s.retain_ns IS NOT NULL
                   AND EXISTS (SELECT 1 FROM samples WHERE process_id = p.id AND t_ns < ?1)
                 ORDER BY p.id",
            )
            .and_then(|mut s| {
                s.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| self.err(e))?;
        let mut next = candidates.into_iter().peekable();
        while next.peek().is_some() {
            if stop() {
                done.interrupted = true;
                return Ok(done);
            }
            let mut left = batch;
            self.in_write(|conn| {
                while left > 0 {
                    let Some(&(process, session)) = next.peek() else {
                        break;
                    };
                    let n = conn
                        .prepare_cached(
                            "DELETE FROM samples WHERE process_id = ?1 AND t_ns IN (
                               SELECT t_ns FROM samples WHERE process_id = ?1
                                 AND t_ns < MIN(?2, (SELECT MAX(t_ns) FROM samples WHERE process_id = ?1))
                               ORDER BY t_ns LIMIT ?3)",
                        )?
                        .execute(params![process, cutoff, left])? as i64;
                    count_removed(conn, session, n)?;
                    done.samples += n as u64;
                    left -= n;
                    if left > 0 {
                        // This process has nothing older left.
                        next.next();
                    }
                }
                Ok(())
            })?;
            std::thread::sleep(pace.pause);
        }
        // Processes over: ended before the cutoff, nothing newer. Their last samples go with
        // them, counted.
        loop {
            if stop() {
                done.interrupted = true;
                return Ok(done);
            }
            let removed = self.in_write(|conn| {
                let over: Vec<(i64, i64)> = conn
                    .prepare_cached(
                        "SELECT p.id, p.session_id FROM processes p JOIN sessions s ON s.id = p.session_id
                         WHERE s.retain_ns IS NOT NULL
                           AND COALESCE(p.exit_ns, s.end_ns,
                                        CASE WHEN s.id IS ?2 THEN NULL ELSE COALESCE(s.last_sample_ns, s.start_ns) END) < ?1
                           AND NOT EXISTS (SELECT 1 FROM samples WHERE process_id = p.id AND t_ns >= ?1)
                         LIMIT ?3",
                    )?
                    .query_map(params![cutoff, recording, batch], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                for &(process, session) in &over {
                    let n = conn
                        .prepare_cached("DELETE FROM samples WHERE process_id = ?1")?
                        .execute([process])? as i64;
                    count_removed(conn, session, n)?;
                    done.samples += n as u64;
                    conn.prepare_cached("DELETE FROM processes WHERE id = ?1")?
                        .execute([process])?;
                }
                Ok(over.len())
            })?;
            done.processes += removed as u64;
            if removed < batch as usize {
                break;
            }
            std::thread::sleep(pace.pause);
        }
        done.sessions = self.in_write(|conn| {
            conn.prepare_cached(
                "DELETE FROM sessions WHERE retain_ns IS NOT NULL AND id IS NOT ?2
                   AND COALESCE(end_ns, last_sample_ns, start_ns) < ?1
                   AND NOT EXISTS (SELECT 1 FROM processes WHERE session_id = sessions.id)",
            )?
            .execute(params![cutoff, recording])
            .map(|n| n as u64)
        })?;
        Ok(done)
    }

    /// Runs `f` in one IMMEDIATE transaction: committed when it succeeds, rolled back otherwise.
    fn in_write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))?;
        match f(conn) {
            Ok(v) => {
                conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
                Ok(v)
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(self.err(e))
            }
        }
    }
}

/// Keeps a session's sample count true after `n` of its samples were deleted.
fn count_removed(conn: &rusqlite::Connection, session: i64, n: i64) -> rusqlite::Result<()> {
    if n > 0 {
        conn.prepare_cached(
            "UPDATE sessions SET sample_count = MAX(sample_count - ?2, 0) WHERE id = ?1",
        )?
        .execute(params![session, n])?;
    }
    Ok(())
}

//! The recorder's side of the store: one session, written in batched transactions.

use std::time::{Duration, Instant};

use rusqlite::params;

use super::{Store, StoreError};
use crate::model::{ExitStatus, Lost, NewSession, ProcessInfo, ProcessLimits, Sample, TimeNs};

/// The longest a sample waits in an open transaction before it is committed. Well under the
/// one second that a killed recorder may lose.
pub const COMMIT_EVERY: Duration = Duration::from_millis(250);

pub(super) const INSERT_SAMPLE: &str = "INSERT INTO samples (process_id, t_ns, rss_anon, rss_file, rss_shmem, swap, vm_size, page_faults, mmap_calls, munmap_calls, brk_calls, mapped_bytes, unmapped_bytes, threads, fds) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

pub(super) const INSERT_PROCESS: &str = "INSERT INTO processes (session_id, pid, start_time, ppid, name, cmdline, memory_limit, address_space_limit, open_files_limit, tasks_limit) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Writes one session. Every write joins an open transaction that [`SessionWriter::flush_if_due`]
/// commits; dropping the writer without [`SessionWriter::finish`] commits what it has and
/// leaves the session marked unfinished.
pub struct SessionWriter<'s> {
    pub(super) store: &'s Store,
    pub(super) session_id: i64,
    in_tx: bool,
    last_commit: Instant,
    /// Samples waiting for the next commit, inserted in key order then: consecutive inserts
    /// land on the same b-tree pages, which costs SQLite far less than interleaving processes.
    pending: Vec<(ProcessId, Sample)>,
    samples: u64,
    /// The latest sample time committed so far.
    committed_until: Option<TimeNs>,
    /// Disk space held back for marking the session cut short when the disk fills.
    reserve: Option<std::fs::File>,
    /// The stacks of growth sites written so far, by content: each is stored once a session.
    pub(super) stacks: std::collections::HashMap<crate::sites::Stack, i64>,
}

/// How much disk a recording holds back to mark its session cut short on a full disk: a few
/// WAL frames of one page each.
const RESERVE_BYTES: u64 = 128 << 10;

/// Space on the store's file system held by a nameless file (O_TMPFILE): nothing is left
/// behind whatever happens, and closing it gives the space back. None where the file system
/// cannot do it.
fn reserve_beside(store: &std::path::Path) -> Option<std::fs::File> {
    use rustix::fs::{FallocateFlags, Mode, OFlags};
    let dir = match store.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let fd = rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .ok()?;
    rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, RESERVE_BYTES).ok()?;
    Some(std::fs::File::from(fd))
}

/// The id of a process row, handed out by [`SessionWriter::add_process`].
pub type ProcessId = i64;

impl Store {
    /// Starts a session and returns its writer.
    pub fn begin_session(&self, session: &NewSession) -> Result<SessionWriter<'_>, StoreError> {
        let id = insert_session(&self.conn, session).map_err(|e| self.err(e))?;
        Ok(SessionWriter {
            store: self,
            session_id: id,
            in_tx: false,
            last_commit: Instant::now(),
            pending: Vec::new(),
            samples: 0,
            committed_until: None,
            reserve: reserve_beside(&self.path),
            stacks: std::collections::HashMap::new(),
        })
    }
}

pub(super) fn insert_session(conn: &rusqlite::Connection, s: &NewSession) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO sessions (host, kernel, backend, backend_reason, interval_ns, command, source, start_ns, monotonic_offset_ns, mem_total, threads_max, pid_max) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            s.host,
            s.kernel,
            s.backend.name(),
            s.backend_reason,
            s.interval_ns,
            s.command,
            s.source,
            s.start,
            s.monotonic_offset_ns,
            s.mem_total.map(|m| m as i64),
            s.threads_max.map(|m| m as i64),
            s.pid_max.map(|m| m as i64)
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn insert_process(
    conn: &rusqlite::Connection,
    session_id: i64,
    p: &ProcessInfo,
    limits: ProcessLimits,
) -> rusqlite::Result<ProcessId> {
    let mut stmt = conn.prepare_cached(INSERT_PROCESS)?;
    stmt.execute(params![
        session_id,
        p.key.pid,
        p.key.start_time as i64,
        p.ppid,
        p.name,
        p.cmdline,
        limits.memory.map(|m| m as i64),
        limits.address_space.map(|m| m as i64),
        limits.open_files.map(|m| m as i64),
        limits.tasks.map(|m| m as i64)
    ])?;
    Ok(conn.last_insert_rowid())
}

pub(super) fn insert_sample(
    conn: &rusqlite::Connection,
    process: ProcessId,
    s: &Sample,
) -> rusqlite::Result<()> {
    let m = &s.metrics;
    let v = |x: Option<u64>| x.map(|x| x as i64);
    let mut stmt = conn.prepare_cached(INSERT_SAMPLE)?;
    stmt.execute(params![
        process,
        s.time,
        v(m.rss_anon),
        v(m.rss_file),
        v(m.rss_shmem),
        v(m.swap),
        v(m.vm_size),
        v(m.page_faults),
        v(m.mmap_calls),
        v(m.munmap_calls),
        v(m.brk_calls),
        v(m.mapped_bytes),
        v(m.unmapped_bytes),
        v(m.threads),
        v(m.fds)
    ])?;
    Ok(())
}

impl SessionWriter<'_> {
    /// The new session's id.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// Samples written so far (committed or not).
    pub fn samples_written(&self) -> u64 {
        self.samples
    }

    /// The latest sample time committed: what a store that fails now keeps.
    pub fn committed_until(&self) -> Option<TimeNs> {
        self.committed_until
    }

    pub(super) fn begin(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            self.store
                .conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| self.store.err(e))?;
            self.in_tx = true;
        }
        Ok(())
    }

    /// Records a newly seen process, with the limits that applied to it, and returns the id its
    /// samples are written under.
    pub fn add_process(
        &mut self,
        info: &ProcessInfo,
        limits: impl Into<ProcessLimits>,
    ) -> Result<ProcessId, StoreError> {
        self.begin()?;
        insert_process(&self.store.conn, self.session_id, info, limits.into())
            .map_err(|e| self.store.err(e))
    }

    /// Records a process's address-space limit again: a program's limits are set just before
    /// it is executed (`ulimit -v`, `prlimit`), often after the process was first seen.
    pub fn set_address_space_limit(
        &mut self,
        id: ProcessId,
        limit: Option<u64>,
    ) -> Result<(), StoreError> {
        self.begin()?;
        self.store
            .conn
            .prepare_cached("UPDATE processes SET address_space_limit = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, limit.map(|l| l as i64)]))
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Records a process's open-file limit (RLIMIT_NOFILE) again, after an exec: `ulimit -n`
    /// and `prlimit` set it just before one.
    pub fn set_open_files_limit(
        &mut self,
        id: ProcessId,
        limit: Option<u64>,
    ) -> Result<(), StoreError> {
        self.begin()?;
        self.store
            .conn
            .prepare_cached("UPDATE processes SET open_files_limit = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, limit.map(|l| l as i64)]))
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Records a new name and command line after exec.
    pub fn rename_process(
        &mut self,
        id: ProcessId,
        name: &str,
        cmdline: &str,
    ) -> Result<(), StoreError> {
        self.begin()?;
        self.store
            .conn
            .prepare_cached("UPDATE processes SET name = ?2, cmdline = ?3 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, name, cmdline]))
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Closes a process's history: it exited (or was last seen) at `time`.
    pub fn process_exited(&mut self, id: ProcessId, time: TimeNs) -> Result<(), StoreError> {
        self.begin()?;
        self.store
            .conn
            .prepare_cached("UPDATE processes SET exit_ns = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, time]))
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Records a process's peak resident memory as the kernel kept it (its high-water mark).
    pub fn set_peak_rss(&mut self, id: ProcessId, bytes: u64) -> Result<(), StoreError> {
        self.begin()?;
        self.store
            .conn
            .prepare_cached(
                "UPDATE processes SET peak_rss = MAX(COALESCE(peak_rss, 0), ?2) WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, bytes as i64]))
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Records what the recording has lost so far (totals, not increments).
    pub fn set_lost(&mut self, lost: Lost) -> Result<(), StoreError> {
        self.begin()?;
        self.store
            .conn
            .prepare_cached(
                "UPDATE sessions SET processes_lost = ?2, events_lost = ?3 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    self.session_id,
                    lost.processes as i64,
                    lost.events as i64
                ])
            })
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// A test harness marked the beginning of a phase.
    pub fn begin_phase(&mut self, name: &str, time: TimeNs) -> Result<(), StoreError> {
        self.begin()?;
        self.store
            .conn
            .prepare_cached("INSERT INTO phases (session_id, name, begin_ns) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![self.session_id, name, time]))
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// A test harness marked the end of a phase: the latest open one of that name. Returns
    /// false when no such phase is open.
    pub fn end_phase(&mut self, name: &str, time: TimeNs) -> Result<bool, StoreError> {
        self.begin()?;
        let changed = self
            .store
            .conn
            .prepare_cached(
                "UPDATE phases SET end_ns = ?3 WHERE id = (SELECT id FROM phases WHERE session_id = ?1 AND name = ?2 AND end_ns IS NULL ORDER BY begin_ns DESC, id DESC LIMIT 1)",
            )
            .and_then(|mut s| s.execute(params![self.session_id, name, time]))
            .map_err(|e| self.store.err(e))?;
        Ok(changed == 1)
    }

    /// Adds one sample of a process; it is written at the next commit.
    pub fn add_sample(&mut self, id: ProcessId, sample: &Sample) -> Result<(), StoreError> {
        self.begin()?;
        self.pending.push((id, *sample));
        self.samples += 1;
        Ok(())
    }

    /// Commits when the open transaction is older than [`COMMIT_EVERY`].
    pub fn flush_if_due(&mut self) -> Result<(), StoreError> {
        if self.in_tx && self.last_commit.elapsed() >= COMMIT_EVERY {
            self.flush()?;
        }
        Ok(())
    }

    /// Commits everything written so far.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            return Ok(());
        }
        let conn = &self.store.conn;
        self.pending.sort_unstable_by_key(|(id, s)| (*id, s.time));
        for (id, sample) in &self.pending {
            insert_sample(conn, *id, sample).map_err(|e| self.store.err(e))?;
        }
        let last = self.pending.iter().map(|(_, s)| s.time).max();
        conn.prepare_cached(
            "UPDATE sessions SET sample_count = sample_count + ?2, last_sample_ns = MAX(COALESCE(last_sample_ns, ?3), ?3) WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![self.session_id, self.pending.len() as i64, last])
        })
        .and_then(|_| conn.execute_batch("COMMIT"))
        .map_err(|e| self.store.err(e))?;
        self.in_tx = false;
        self.pending.clear();
        self.last_commit = Instant::now();
        self.committed_until = self.committed_until.max(last);
        Ok(())
    }

    /// Says how the recorded command's process tree is held, for the session record.
    pub fn set_tree(&mut self, tree: &str) -> Result<(), StoreError> {
        self.begin()?;
        self.store
            .conn
            .execute(
                "UPDATE sessions SET tree = ?2 WHERE id = ?1",
                params![self.session_id, tree],
            )
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Gives up everything not committed yet, after the store failed under it, so the store
    /// keeps exactly what was committed. Returns how many samples were dropped.
    pub fn abandon(&mut self) -> u64 {
        let dropped = self.pending.len() as u64;
        if self.in_tx {
            // SQLite may have rolled back already (a full disk): then this fails, harmlessly.
            let _ = self.store.conn.execute_batch("ROLLBACK");
        }
        self.in_tx = false;
        self.pending.clear();
        // Stacks first written in the rolled-back transaction are gone with it.
        self.stacks.clear();
        self.samples -= dropped;
        dropped
    }

    /// Marks the session as cut short: the store stopped taking its samples at `at`, for
    /// `reason`; how the command exited is still recorded. What was committed is kept. May be
    /// tried again (the disk may have room later).
    pub fn cut_short(
        &mut self,
        reason: &str,
        at: TimeNs,
        exit: Option<ExitStatus>,
    ) -> Result<(), StoreError> {
        self.abandon();
        // The disk may be full: give back the space held for this.
        self.reserve = None;
        let (code, signal) = exit_columns(exit);
        self.store
            .conn
            .execute(
                "UPDATE sessions SET cut_short = ?2, end_ns = ?3, exit_status = ?4, exit_signal = ?5 WHERE id = ?1",
                params![self.session_id, reason, at, code, signal],
            )
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Removes the session and everything written under it (a command that could not start
    /// leaves no empty session behind).
    pub fn discard(&mut self) -> Result<(), StoreError> {
        self.abandon();
        let conn = &self.store.conn;
        conn.execute_batch("PRAGMA foreign_keys = ON")
            .and_then(|()| conn.execute("DELETE FROM sessions WHERE id = ?1", [self.session_id]))
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// Ends the session: its end time and, for a recorded command, how it exited.
    pub fn finish(mut self, end: TimeNs, exit: Option<ExitStatus>) -> Result<i64, StoreError> {
        self.end(end, exit)?;
        Ok(self.session_id)
    }

    /// [`SessionWriter::finish`] without giving up the writer: on failure the caller can still
    /// mark the session as cut short.
    pub fn end(&mut self, end: TimeNs, exit: Option<ExitStatus>) -> Result<(), StoreError> {
        self.begin()?;
        let (code, signal) = exit_columns(exit);
        self.store
            .conn
            .execute(
                "UPDATE sessions SET end_ns = ?2, exit_status = ?3, exit_signal = ?4 WHERE id = ?1",
                params![self.session_id, end, code, signal],
            )
            .map_err(|e| self.store.err(e))?;
        self.flush()?;
        // Fold the WAL back into the main file, so a finished store is one file to copy or
        // upload. Best effort: a reader holding an old snapshot only delays it.
        let _ = self
            .store
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(())
    }
}

/// An exit as the session's (exit_status, exit_signal) columns.
fn exit_columns(exit: Option<ExitStatus>) -> (Option<i32>, Option<i32>) {
    match exit {
        Some(ExitStatus::Code(c)) => (Some(c), None),
        Some(ExitStatus::Signal(s)) => (None, Some(s)),
        None => (None, None),
    }
}

impl Drop for SessionWriter<'_> {
    fn drop(&mut self) {
        // Best effort: an error path still keeps what was recorded.
        let _ = self.flush();
    }
}

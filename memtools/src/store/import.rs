//! Imports: a whole session written in one transaction, so a file rejected half-way through
//! leaves the store exactly as it was.

use rusqlite::Transaction;

use super::writer::{ProcessId, insert_process, insert_sample, insert_session};
use super::{Store, StoreError};
use crate::model::{NewSession, ProcessInfo, ProcessLimits, Sample, TimeNs};

/// Writes an imported session; handed to the parser by [`Store::import`].
pub struct Importer<'t> {
    tx: Transaction<'t>,
    session_id: i64,
    samples: u64,
    first: Option<TimeNs>,
    last: Option<TimeNs>,
}

/// Why an import failed: the store, or the parser's own reason.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure<E> {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Input(E),
}

impl Importer<'_> {
    /// Adds a process and returns its id.
    pub fn add_process(&mut self, info: &ProcessInfo) -> rusqlite::Result<ProcessId> {
        insert_process(&self.tx, self.session_id, info, ProcessLimits::default())
    }

    /// Adds a sample of a process added before.
    pub fn add_sample(&mut self, id: ProcessId, sample: &Sample) -> rusqlite::Result<()> {
        insert_sample(&self.tx, id, sample)?;
        self.samples += 1;
        self.first = Some(self.first.map_or(sample.time, |t| t.min(sample.time)));
        self.last = Some(self.last.map_or(sample.time, |t| t.max(sample.time)));
        Ok(())
    }
}

impl Store {
    /// Imports one session: `fill` adds its processes and samples; if it fails, nothing of
    /// the session is kept. The session spans its samples, first to last.
    pub fn import<E>(
        &mut self,
        session: &NewSession,
        fill: impl FnOnce(&mut Importer<'_>) -> Result<(), E>,
    ) -> Result<i64, ImportFailure<E>> {
        let path = self.path.clone();
        let sqlite = |e| StoreError::Sqlite {
            path: path.clone(),
            source: e,
        };
        let tx = self.conn.transaction().map_err(sqlite)?;
        let session_id = insert_session(&tx, session).map_err(sqlite)?;
        let mut importer = Importer {
            tx,
            session_id,
            samples: 0,
            first: None,
            last: None,
        };
        // On error the importer (and its transaction) is dropped here: a rollback.
        fill(&mut importer).map_err(ImportFailure::Input)?;
        let Importer {
            tx,
            samples,
            first,
            last,
            ..
        } = importer;
        // An import spans its samples: the first is its start, the last its end.
        tx.execute(
            "UPDATE sessions SET sample_count = ?2, start_ns = COALESCE(?3, start_ns), last_sample_ns = ?4, end_ns = ?4 WHERE id = ?1",
            rusqlite::params![session_id, samples as i64, first, last],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(session_id)
    }
}

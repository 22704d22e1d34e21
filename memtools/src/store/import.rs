//! Imports: every session of one command written in one transaction, so a file rejected
//! half-way through (or the third of three files) leaves the store exactly as it was.

use rusqlite::Transaction;

use super::writer::{ProcessId, insert_process, insert_sample, insert_session};
use super::{Store, StoreError};
use crate::model::{NewSession, ProcessInfo, ProcessLimits, Sample, TimeNs};

/// Sessions being imported together: all are kept by [`ImportBatch::commit`], none if it is
/// dropped before.
pub struct ImportBatch<'s> {
    tx: Transaction<'s>,
    path: std::path::PathBuf,
}

/// Writes one imported session; handed to the parser by [`ImportBatch::import`].
pub struct Importer<'t> {
    tx: &'t Transaction<'t>,
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
        insert_process(self.tx, self.session_id, info, ProcessLimits::default())
    }

    /// Adds a sample of a process added before.
    pub fn add_sample(&mut self, id: ProcessId, sample: &Sample) -> rusqlite::Result<()> {
        insert_sample(self.tx, id, sample)?;
        self.samples += 1;
        self.first = Some(self.first.map_or(sample.time, |t| t.min(sample.time)));
        self.last = Some(self.last.map_or(sample.time, |t| t.max(sample.time)));
        Ok(())
    }
}

impl Store {
    /// Starts importing sessions that are kept all together or not at all.
    pub fn import_batch(&mut self) -> Result<ImportBatch<'_>, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| StoreError::Sqlite {
                path: path.clone(),
                source: e,
            })?;
        Ok(ImportBatch { tx, path })
    }

    /// Imports one session on its own: `fill` adds its processes and samples; if it fails,
    /// nothing of the session is kept.
    pub fn import<E>(
        &mut self,
        session: &NewSession,
        fill: impl FnOnce(&mut Importer<'_>) -> Result<(), E>,
    ) -> Result<i64, ImportFailure<E>> {
        let mut batch = self.import_batch()?;
        let id = batch.import(session, fill)?;
        batch.commit()?;
        Ok(id)
    }
}

impl ImportBatch<'_> {
    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |e| StoreError::Sqlite {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Adds one session: `fill` adds its processes and samples. The session spans its
    /// samples, first to last. On failure the caller drops the batch: nothing is kept.
    pub fn import<E>(
        &mut self,
        session: &NewSession,
        fill: impl FnOnce(&mut Importer<'_>) -> Result<(), E>,
    ) -> Result<i64, ImportFailure<E>> {
        let session_id = insert_session(&self.tx, session).map_err(self.sqlite())?;
        let mut importer = Importer {
            tx: &self.tx,
            session_id,
            samples: 0,
            first: None,
            last: None,
        };
        fill(&mut importer).map_err(ImportFailure::Input)?;
        let Importer {
            samples,
            first,
            last,
            ..
        } = importer;
        // An import spans its samples: the first is its start, the last its end.
        self.tx
            .execute(
                "UPDATE sessions SET sample_count = ?2, start_ns = COALESCE(?3, start_ns), last_sample_ns = ?4, end_ns = ?4 WHERE id = ?1",
                rusqlite::params![session_id, samples as i64, first, last],
            )
            .map_err(self.sqlite())?;
        Ok(session_id)
    }

    /// Keeps every session imported in this batch.
    pub fn commit(self) -> Result<(), StoreError> {
        let path = self.path;
        self.tx
            .commit()
            .map_err(|e| StoreError::Sqlite { path, source: e })
    }
}

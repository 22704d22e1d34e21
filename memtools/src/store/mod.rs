//! The sample store: one SQLite file (WAL mode) holding sessions, processes and samples.
//!
//! This module is the only place that knows SQL. Writers batch samples in transactions that
//! commit at least every [`writer::COMMIT_EVERY`], so a recorder killed at any moment leaves a
//! store that opens and holds everything but its last moments; WAL lets the GUI or `sessions`
//! read while a recording is in progress.

mod import;
mod live;
mod open;
mod reader;
mod resymbolize;
pub mod retention;
pub mod schema;
mod sites;
mod writer;

use rusqlite::Connection;
use std::path::{Path, PathBuf};

pub use import::{ImportBatch, ImportFailure, Importer};
pub use reader::{ForEachError, Phase, ProcessRow, SessionRow, SessionState, as_recorded};
pub use retention::{Pace, Pruned};
pub use writer::{COMMIT_EVERY, ProcessId, SessionWriter};

/// Where the store is when neither `--store` nor `MEMTOOLS_STORE` says otherwise.
pub const DEFAULT_STORE: &str = "memtools.db";

/// What can go wrong with a store, phrased for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path}: written by a newer memtools (schema version {found}, this build reads up to {supported}); upgrade memtools to read it"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("{path}: an SQLite database, but not a memtools store; choose another --store path")]
    NotAStore { path: PathBuf },
    #[error("{path}: not an SQLite database or damaged ({source}); move it aside and record again")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{path}: a symbolic link; memtools writes only through paths that are not links (give the link's target as --store, or another path)"
    )]
    Link { path: PathBuf },
    #[error("{path}: not a regular file; choose another --store path")]
    NotAFile { path: PathBuf },
    #[error(
        "{path}: an empty file, not a memtools store; memtools creates its store itself (remove the file or choose another --store path)"
    )]
    EmptyFile { path: PathBuf },
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: its write-ahead log ({path}-wal) can only be read with its index ({path}-shm), which is missing and cannot be created here (read-only); copy the store with its -wal and -shm files somewhere writable"
    )]
    NeedsShm { path: PathBuf },
    #[error(
        "{path}: a rollback journal ({path}-journal) was left by a writer killed part-way, and the store is too large to roll back in a private copy; open it once with `memtools-user import` or `record` (which rolls it back)"
    )]
    HotJournal { path: PathBuf },
    #[error("{path}: no such store (record or import a session first)")]
    Missing { path: PathBuf },
    #[error("{path}: the store has no sessions yet (record or import one first)")]
    NoSessions { path: PathBuf },
    #[error("{path}: no session with id {id} (`memtools-user sessions` lists them)")]
    NoSuchSession { path: PathBuf, id: i64 },
}

/// Internal error before the path is attached; see [`Store::err`].
#[derive(Debug)]
pub(crate) enum RawError {
    Sqlite(rusqlite::Error),
    NewerSchema { found: i64, supported: i64 },
    NotAStore,
}

impl From<rusqlite::Error> for RawError {
    fn from(e: rusqlite::Error) -> Self {
        RawError::Sqlite(e)
    }
}

/// Which session a command works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionSelector {
    /// The newest session.
    Latest,
    /// A session by id.
    Id(i64),
}

impl std::str::FromStr for SessionSelector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "latest" {
            return Ok(SessionSelector::Latest);
        }
        s.parse::<i64>()
            .map(SessionSelector::Id)
            .map_err(|_| format!("`{s}` is neither a session id nor `latest`"))
    }
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// A private copy the reader reads instead (a hot journal rolled back there).
    _scratch: Option<tempfile::TempDir>,
    /// A reader's view of an empty file: no sessions, nothing on disk.
    empty_view: bool,
    /// The file a writer opened (device, inode), to notice it being removed or replaced.
    identity: Option<(u64, u64)>,
}

impl Store {
    fn from_parts(conn: Connection, path: PathBuf, scratch: Option<tempfile::TempDir>) -> Store {
        Store {
            conn,
            path,
            _scratch: scratch,
            empty_view: false,
            identity: None,
        }
    }

    fn is_empty_view(&self) -> bool {
        self.empty_view
    }

    fn remember_identity(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.identity = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
    }

    /// Whether the file a writer opened is still the one at its path: a store removed (or
    /// replaced) while recording takes writes that nobody will ever read.
    pub fn still_there(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::symlink_metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        self.identity.is_none() || now == self.identity
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes on disk, WAL included: what the recorder's status line shows.
    pub fn size_on_disk(&self) -> u64 {
        let mut total = 0;
        for suffix in ["", "-wal"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            total += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        }
        total
    }

    pub(crate) fn err(&self, e: impl Into<RawError>) -> StoreError {
        match e.into() {
            RawError::Sqlite(e) => classify(&self.path, e),
            RawError::NewerSchema { found, supported } => StoreError::NewerSchema {
                path: self.path.clone(),
                found,
                supported,
            },
            RawError::NotAStore => StoreError::NotAStore {
                path: self.path.clone(),
            },
        }
    }

    /// Resolves `latest` or checks that an id exists.
    pub fn resolve(&self, selector: SessionSelector) -> Result<i64, StoreError> {
        use rusqlite::OptionalExtension;
        let found: Option<i64> = match selector {
            SessionSelector::Latest => self
                .conn
                .query_row(
                    "SELECT id FROM sessions ORDER BY start_ns DESC, id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional(),
            SessionSelector::Id(id) => self
                .conn
                .query_row("SELECT id FROM sessions WHERE id = ?1", [id], |r| r.get(0))
                .optional(),
        }
        .map_err(|e| self.err(e))?;
        found.ok_or_else(|| match selector {
            SessionSelector::Latest => StoreError::NoSessions {
                path: self.path.clone(),
            },
            SessionSelector::Id(id) => StoreError::NoSuchSession {
                path: self.path.clone(),
                id,
            },
        })
    }
}

impl From<schema::MigrateError> for RawError {
    fn from(e: schema::MigrateError) -> Self {
        match e {
            schema::MigrateError::Sqlite(e) => RawError::Sqlite(e),
            schema::MigrateError::NewerSchema { found, supported } => {
                RawError::NewerSchema { found, supported }
            }
            schema::MigrateError::NotAStore => RawError::NotAStore,
        }
    }
}

/// Tells a damaged or foreign file from an ordinary SQL failure.
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path: path.to_path_buf(),
            source: e,
        },
        _ => StoreError::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

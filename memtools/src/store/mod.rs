//! The sample store: one SQLite file (WAL mode) holding sessions, processes and samples.
//!
//! This module is the only place that knows SQL. Writers batch samples in transactions that
//! commit at least every [`writer::COMMIT_EVERY`], so a recorder killed at any moment leaves a
//! store that opens and holds everything but its last moments; WAL lets the GUI or `sessions`
//! read while a recording is in progress.

mod import;
mod live;
mod reader;
pub mod retention;
pub mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use import::{ImportFailure, Importer};
pub use reader::{ForEachError, Phase, ProcessRow, SessionRow, as_recorded};
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
}

impl Store {
    /// Opens a store for writing, creating it and migrating its schema as needed.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(|e| classify(&path, e))?;
        let mut store = Store { conn, path };
        store.configure().map_err(|e| store.err(e))?;
        let result = schema::migrate(&mut store.conn);
        result.map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Opens an existing store for reading only; never creates or migrates it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.exists() {
            return Err(StoreError::Missing { path });
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify(&path, e))?;
        let store = Store { conn, path };
        store
            .conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| store.err(e))?;
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| store.err(e))?;
        if version > schema::CURRENT_VERSION {
            return Err(store.err(RawError::NewerSchema {
                found: version,
                supported: schema::CURRENT_VERSION,
            }));
        }
        if version < schema::CURRENT_VERSION {
            // An older store: migrate a writable handle once, then read.
            let path = store.path.clone();
            drop(store);
            return Store::open(path);
        }
        Ok(store)
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

    fn configure(&self) -> Result<(), RawError> {
        self.conn.busy_timeout(Duration::from_secs(5))?;
        // WAL: readers never block the recorder and a killed writer loses only its open
        // transaction. NORMAL sync: a commit survives a killed process (not a power cut), at
        // a fraction of FULL's cost.
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(())
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

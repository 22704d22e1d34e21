//! Opening a store, the two ways that must never hurt what is at the path.
//!
//! - A reader ([`Store::open_read_only`]) never writes a byte: no WAL switch, no migration, no
//!   `-wal`/`-shm` left behind. A finished store (no `-wal`) is opened immutable, so a read-only
//!   file, directory or mount works; a store being written (or whose recorder was killed) is
//!   read through its WAL. An older schema is read through temporary stand-ins for what later
//!   migrations added (see [`super::schema::stand_ins`]); a database that is not a store is
//!   refused untouched; a hot rollback journal is rolled back in a private copy.
//! - A writer ([`Store::open`]) creates a new store whole under a temporary name, already in
//!   WAL mode with its schema, and links it into place without replacing anything: a recorder
//!   killed while creating leaves no half-made store (no hot journal) at the path. It refuses a
//!   link, a non-file, an empty file and a database that is not a store, having changed nothing.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{RawError, Store, StoreError, classify, schema};

/// The largest store whose hot journal a reader rolls back in a private copy.
const MAX_COPY_BYTES: u64 = 64 << 20;

/// `path` with a suffix appended to its file name (`memtools.db-wal`).
pub(crate) fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// What a reader found at a path before it looked inside.
enum Found {
    Missing,
    /// A regular file (through links: reading through one is harmless).
    File,
}

fn look(path: &Path) -> Result<Found, StoreError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Found::File),
        Ok(_) => Err(StoreError::NotAFile {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Found::Missing),
        Err(e) => Err(io_err(path, "cannot look at it")(e)),
    }
}

/// An SQLite `file:` URI for a path, every byte that could mean something to the URI parser
/// escaped, so any file name opens as itself.
fn file_uri(path: &Path, query: &str) -> Result<String, StoreError> {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(path).map_err(io_err(path, "cannot resolve its path"))?;
    let mut uri = String::from("file://");
    for &b in abs.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push('?');
    uri.push_str(query);
    Ok(uri)
}

const READ_FLAGS: OpenFlags = OpenFlags::SQLITE_OPEN_READ_ONLY
    .union(OpenFlags::SQLITE_OPEN_NO_MUTEX)
    .union(OpenFlags::SQLITE_OPEN_URI);

impl Store {
    /// Opens an existing store for reading only. Never creates, migrates or changes it, nor
    /// leaves a file beside it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Found::Missing = look(&path)? {
            return Err(StoreError::Missing { path });
        }
        let journal = sidecar(&path, "-journal");
        let hot = std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0);
        let (conn, scratch) = if hot {
            let (conn, dir) = rolled_back_copy(&path)?;
            (conn, Some(dir))
        } else if sidecar(&path, "-wal").exists() {
            // Being written, or its writer was killed: read through the WAL, which needs the
            // `-shm` index (SQLite reads a read-only one).
            let conn = Connection::open_with_flags(file_uri(&path, "mode=ro")?, READ_FLAGS)
                .map_err(|e| classify(&path, e))?;
            (conn, None)
        } else {
            // Finished (or never written in WAL mode): the file alone is the store. Immutable:
            // no lock, no `-shm`, nothing created, so a read-only place works.
            let conn = Connection::open_with_flags(file_uri(&path, "immutable=1")?, READ_FLAGS)
                .map_err(|e| classify(&path, e))?;
            (conn, None)
        };
        let store = Store::from_parts(conn, path, scratch);
        store
            .conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(|e| store.err(e))?;
        match inspect(&store.conn).map_err(|e| store.read_err(e))? {
            Kind::Store => {}
            Kind::Empty => return store.empty_view(),
            Kind::Older => schema::stand_ins(&store.conn).map_err(|e| store.err(e))?,
        }
        Ok(store)
    }

    /// Opens a store for writing: an existing store is migrated as needed; a missing one is
    /// created whole, then linked into place. Anything else at the path is refused unchanged.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        refuse_links(&path)?;
        let exists = match std::fs::symlink_metadata(&path) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_err(&path, "cannot look at it")(e)),
        };
        // Someone else may create it meanwhile: then it is an existing file like any other.
        if !exists {
            create_whole(&path)?;
        }
        // What is there must already be a store; looked at without writing.
        let reader = Store::open_read_only(&path)?;
        if reader.is_empty_view() {
            return Err(StoreError::EmptyFile { path });
        }
        drop(reader);
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )
        .map_err(|e| classify(&path, e))?;
        let mut store = Store::from_parts(conn, path, None);
        configure(&store.conn).map_err(|e| store.err(e))?;
        let result = schema::migrate(&mut store.conn);
        result.map_err(|e| store.err(e))?;
        store.remember_identity();
        Ok(store)
    }

    /// A reader's answer for an empty database: a store with no sessions, kept in memory.
    fn empty_view(self) -> Result<Store, StoreError> {
        let path = self.path;
        let mut conn = Connection::open_in_memory().map_err(|e| classify(&path, e))?;
        schema::migrate(&mut conn).map_err(|e| match e {
            schema::MigrateError::Sqlite(e) => classify(&path, e),
            _ => StoreError::NotAStore { path: path.clone() },
        })?;
        let mut store = Store::from_parts(conn, path, None);
        store.empty_view = true;
        Ok(store)
    }

    fn read_err(&self, e: InspectError) -> StoreError {
        match e {
            InspectError::Sqlite(e) => self.shm_or(e),
            InspectError::Raw(r) => self.err(r),
        }
    }

    /// A store in WAL mode whose `-shm` index cannot be created here (a read-only place) is
    /// said as such; other errors as they are.
    fn shm_or(&self, e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        let cantinit = e
            .sqlite_error()
            .is_some_and(|s| s.extended_code == rusqlite::ffi::SQLITE_READONLY_CANTINIT);
        let cantopen = e.sqlite_error_code() == Some(ErrorCode::CannotOpen);
        if (cantinit || cantopen) && sidecar(&self.path, "-wal").exists() {
            return StoreError::NeedsShm {
                path: self.path.clone(),
            };
        }
        self.err(e)
    }
}

fn configure(conn: &Connection) -> Result<(), RawError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // WAL: readers never block the recorder and a killed writer loses only its open
    // transaction. NORMAL sync: a commit survives a killed process (not a power cut), at
    // a fraction of FULL's cost.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// What a store file holds, read without writing.
enum Kind {
    Store,
    /// The current schema is not there yet: read through stand-ins.
    Older,
    /// No table at all (an empty file, or a creation rolled back).
    Empty,
}

enum InspectError {
    Sqlite(rusqlite::Error),
    Raw(RawError),
}

impl From<rusqlite::Error> for InspectError {
    fn from(e: rusqlite::Error) -> Self {
        InspectError::Sqlite(e)
    }
}

fn inspect(conn: &Connection) -> Result<Kind, InspectError> {
    // Nothing of ours is written to disk even for the stand-ins' temporary tables.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    if app != schema::APPLICATION_ID && tables > 0 {
        return Err(InspectError::Raw(RawError::NotAStore));
    }
    if version > schema::CURRENT_VERSION {
        return Err(InspectError::Raw(RawError::NewerSchema {
            found: version,
            supported: schema::CURRENT_VERSION,
        }));
    }
    Ok(if tables == 0 {
        Kind::Empty
    } else if version < schema::CURRENT_VERSION {
        Kind::Older
    } else {
        Kind::Store
    })
}

/// A writer never goes through a link or into something that is not a file, at the store's
/// path or its companions (SQLite would refuse a link too, less clearly).
fn refuse_links(path: &Path) -> Result<(), StoreError> {
    for p in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
        sidecar(path, "-journal"),
    ] {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => return Err(StoreError::Link { path: p }),
            Ok(m) if !m.is_file() => return Err(StoreError::NotAFile { path: p }),
            _ => {}
        }
    }
    Ok(())
}

/// A temporary name beside the store, ours alone (created with O_EXCL).
fn temporary_name(path: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = path.file_name().map_or_else(OsString::new, OsString::from);
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{}-{nanos:09}.creating", std::process::id()));
    path.with_file_name(tmp)
}

/// Creates a new store under a temporary name (WAL mode, current schema, closed cleanly so no
/// `-wal` remains), then links it to `path` unless something got there first.
fn create_whole(path: &Path) -> Result<(), StoreError> {
    let tmp = temporary_name(path);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc_o_nofollow())
        .open(&tmp)
        .map_err(io_err(path, "cannot create it"))?;
    let result = build_and_link(&file, &tmp, path);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(sidecar(&tmp, suffix));
    }
    result
}

fn build_and_link(file: &File, tmp: &Path, path: &Path) -> Result<(), StoreError> {
    let mut conn = Connection::open_with_flags(
        tmp,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| classify(path, e))?;
    let wrap = |e: RawError| match e {
        RawError::Sqlite(e) => classify(path, e),
        _ => StoreError::NotAStore {
            path: path.to_path_buf(),
        },
    };
    configure(&conn).map_err(wrap)?;
    schema::migrate(&mut conn).map_err(|e| wrap(e.into()))?;
    conn.close().map_err(|(_, e)| classify(path, e))?;
    file.sync_all().map_err(io_err(path, "cannot create it"))?;
    // The name must still be the file we made (a shared directory could have swapped it).
    let ours = file.metadata().map_err(io_err(path, "cannot create it"))?;
    let there = std::fs::symlink_metadata(tmp).map_err(io_err(path, "cannot create it"))?;
    if (ours.dev(), ours.ino()) != (there.dev(), there.ino()) {
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            what: "cannot create it",
            source: io::Error::other("its temporary file was replaced by someone else"),
        });
    }
    match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        // Someone made it meanwhile: the caller looks at it like any existing file.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(path, "cannot create it")(e)),
    }
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// A store with a hot rollback journal (its creator was killed before it was in WAL mode, by
/// an older memtools or another program): rolled back in a private copy, the original
/// untouched.
fn rolled_back_copy(path: &Path) -> Result<(Connection, tempfile::TempDir), StoreError> {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if size > MAX_COPY_BYTES {
        return Err(StoreError::HotJournal {
            path: path.to_path_buf(),
        });
    }
    let dir = tempfile::Builder::new()
        .prefix("memtools-rollback-")
        .tempdir()
        .map_err(io_err(path, "cannot copy it to roll back its journal"))?;
    let copy = dir.path().join("store.db");
    std::fs::copy(path, &copy).map_err(io_err(path, "cannot copy it"))?;
    std::fs::copy(sidecar(path, "-journal"), sidecar(&copy, "-journal"))
        .map_err(io_err(path, "cannot copy its journal"))?;
    let conn = Connection::open_with_flags(
        &copy,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| classify(path, e))?;
    Ok((conn, dir))
}

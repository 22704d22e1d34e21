//! The store's schema and its migrations.
//!
//! `PRAGMA user_version` holds the schema version. Each migration moves the schema one version
//! forward inside the transaction that opens the store, so a store is never half-migrated.
//! A store written by a newer memtools is refused rather than guessed at.

use rusqlite::Connection;

/// Why a store's schema could not be brought up to date.
#[derive(Debug)]
pub enum MigrateError {
    Sqlite(rusqlite::Error),
    NewerSchema { found: i64, supported: i64 },
    NotAStore,
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Sqlite(e)
    }
}

/// The application id in the SQLite header ("MEMT"), so `file(1)` and we can tell our stores
/// from other SQLite files.
pub const APPLICATION_ID: i32 = 0x4d45_4d54;

/// Migrations, in order: `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: sessions, processes keyed by (pid, start time), samples with every metric nullable.
    r#"
    CREATE TABLE sessions (
        id              INTEGER PRIMARY KEY,
        host            TEXT NOT NULL,
        kernel          TEXT NOT NULL,
        backend         TEXT NOT NULL,
        backend_reason  TEXT NOT NULL,
        interval_ns     INTEGER,
        command         TEXT,
        source          TEXT,
        start_ns        INTEGER NOT NULL,
        end_ns          INTEGER,
        exit_status     INTEGER,
        exit_signal     INTEGER
    );
    CREATE TABLE processes (
        id          INTEGER PRIMARY KEY,
        session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        pid         INTEGER NOT NULL,
        start_time  INTEGER NOT NULL,
        ppid        INTEGER,
        name        TEXT NOT NULL,
        cmdline     TEXT NOT NULL,
        exit_ns     INTEGER,
        UNIQUE (session_id, pid, start_time)
    );
    CREATE TABLE samples (
        process_id      INTEGER NOT NULL REFERENCES processes(id) ON DELETE CASCADE,
        t_ns            INTEGER NOT NULL,
        rss_anon        INTEGER,
        rss_file        INTEGER,
        rss_shmem       INTEGER,
        swap            INTEGER,
        vm_size         INTEGER,
        page_faults     INTEGER,
        mmap_calls      INTEGER,
        munmap_calls    INTEGER,
        brk_calls       INTEGER,
        mapped_bytes    INTEGER,
        unmapped_bytes  INTEGER,
        PRIMARY KEY (process_id, t_ns)
    ) WITHOUT ROWID;
    "#,
    // 2: per-session counters kept by the writer (sample count, last sample time), so listing
    // sessions stays instant on a store of many millions of samples and a recording cut off by
    // a crash still has a duration; and the monotonic clock offset of the design notes.
    r#"
    ALTER TABLE sessions ADD COLUMN monotonic_offset_ns INTEGER;
    ALTER TABLE sessions ADD COLUMN sample_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN last_sample_ns INTEGER;
    UPDATE sessions SET last_sample_ns = (
        SELECT MAX(t_ns) FROM samples JOIN processes ON samples.process_id = processes.id
        WHERE processes.session_id = sessions.id);
    UPDATE sessions SET sample_count = (
        SELECT COUNT(*) FROM samples JOIN processes ON samples.process_id = processes.id
        WHERE processes.session_id = sessions.id);
    CREATE INDEX processes_by_session ON processes(session_id);
    "#,
    // 3: the memory a process could grow into where it ran (the machine's, its cgroup's), so
    // time-to-limit is projected against that, not the analysing machine's memory.
    r#"
    ALTER TABLE sessions ADD COLUMN mem_total INTEGER;
    ALTER TABLE processes ADD COLUMN memory_limit INTEGER;
    "#,
    // 4: phases a test harness marked (`begin NAME` / `end NAME`), so a leak can be attributed
    // to the tests during which the memory grew.
    r#"
    CREATE TABLE phases (
        id          INTEGER PRIMARY KEY,
        session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        begin_ns    INTEGER NOT NULL,
        end_ns      INTEGER
    );
    CREATE INDEX phases_by_session ON phases(session_id, begin_ns);
    "#,
    // 5: a process's address-space limit (RLIMIT_AS) where one was set, so time-to-limit for
    // virtual size is projected against what bounds it (and not claimed where nothing does).
    r#"
    ALTER TABLE processes ADD COLUMN address_space_limit INTEGER;
    "#,
    // 6: how a recording that could not finish writing ended (`cut_short`: why the store
    // stopped taking samples; the samples before it are kept), and how the recorded command's
    // process tree was held (`tree`: its cgroup, or the recorder as subreaper).
    r#"
    ALTER TABLE sessions ADD COLUMN cut_short TEXT;
    ALTER TABLE sessions ADD COLUMN tree TEXT;
    "#,
    // 7: what a recording could not record (processes the kernel side could not follow,
    // process events it lost), so a session says it is incomplete; and each process's peak
    // resident memory as the kernel kept it (its high-water mark, reported at exit), which
    // a process shorter than the interval has no samples to show.
    r#"
    ALTER TABLE sessions ADD COLUMN processes_lost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN events_lost INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE processes ADD COLUMN peak_rss INTEGER;
    "#,
    // 8: growth sites (recorded with eBPF): the user stacks sampled where a followed process
    // grew (page faults, brk/mmap), counted per process, stack and time bucket, so growth can
    // be attributed to code within any window. Stacks are shared within a session; each frame
    // keeps its module's build-id and file offset besides its names, so a session copied
    // elsewhere can be symbolized again where the binaries are. `inlined` frames come from
    // the same address as the frame below them.
    r#"
    CREATE TABLE site_stacks (
        id          INTEGER PRIMARY KEY,
        session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE
    );
    CREATE INDEX site_stacks_by_session ON site_stacks(session_id);
    CREATE TABLE site_frames (
        stack_id     INTEGER NOT NULL REFERENCES site_stacks(id) ON DELETE CASCADE,
        position     INTEGER NOT NULL,
        address      INTEGER NOT NULL,
        module       TEXT,
        build_id     TEXT,
        file_offset  INTEGER,
        function     TEXT,
        file         TEXT,
        line         INTEGER,
        inlined      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (stack_id, position)
    ) WITHOUT ROWID;
    CREATE TABLE sites (
        process_id  INTEGER NOT NULL REFERENCES processes(id) ON DELETE CASCADE,
        t_ns        INTEGER NOT NULL,
        stack_id    INTEGER NOT NULL REFERENCES site_stacks(id) ON DELETE CASCADE,
        cause       TEXT NOT NULL,
        samples     INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        PRIMARY KEY (process_id, t_ns, stack_id, cause)
    ) WITHOUT ROWID;
    "#,
    // 9 (retention, `serve`): how long a session's samples are kept, for the sessions a
    // long-running recorder keeps bounded (NULL: kept forever), and the processes still running,
    // which the exporter reads every second of a recording of millions of processes.
    r#"
    ALTER TABLE sessions ADD COLUMN retain_ns INTEGER;
    CREATE INDEX processes_running ON processes(session_id) WHERE exit_ns IS NULL;
    "#,
    // 10: the leaks that are not bytes: each sample's threads and open file descriptors, the
    // limits they run into (a process's RLIMIT_NOFILE and its cgroup's pids.max; the machine's
    // kernel.threads-max and pid_max), so a count's time to its limit is projected against
    // what applied where it ran.
    r#"
    ALTER TABLE samples ADD COLUMN threads INTEGER;
    ALTER TABLE samples ADD COLUMN fds INTEGER;
    ALTER TABLE processes ADD COLUMN open_files_limit INTEGER;
    ALTER TABLE processes ADD COLUMN tasks_limit INTEGER;
    ALTER TABLE sessions ADD COLUMN threads_max INTEGER;
    ALTER TABLE sessions ADD COLUMN pid_max INTEGER;
    "#,
];

/// Columns later migrations added, with what a reader of an older store (which it may not
/// write, so cannot migrate) sees in their place. Looked up by name, not version, so an entry
/// stays right whatever number its migration gets.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("sessions", "monotonic_offset_ns", "NULL"),
    (
        "sessions",
        "sample_count",
        "(SELECT COUNT(*) FROM main.samples JOIN main.processes p ON samples.process_id = p.id WHERE p.session_id = s.id)",
    ),
    (
        "sessions",
        "last_sample_ns",
        "(SELECT MAX(t_ns) FROM main.samples JOIN main.processes p ON samples.process_id = p.id WHERE p.session_id = s.id)",
    ),
    ("sessions", "mem_total", "NULL"),
    ("processes", "memory_limit", "NULL"),
    ("processes", "address_space_limit", "NULL"),
    ("sessions", "cut_short", "NULL"),
    ("sessions", "tree", "NULL"),
    ("sessions", "processes_lost", "0"),
    ("sessions", "events_lost", "0"),
    ("processes", "peak_rss", "NULL"),
    ("sessions", "retain_ns", "NULL"),
    ("samples", "threads", "NULL"),
    ("samples", "fds", "NULL"),
    ("processes", "open_files_limit", "NULL"),
    ("processes", "tasks_limit", "NULL"),
    ("sessions", "threads_max", "NULL"),
    ("sessions", "pid_max", "NULL"),
];

/// Tables later migrations added, made empty and temporary for a reader of an older store.
const ADDED_TABLES: &[(&str, &str)] = &[
    (
        "phases",
        "CREATE TEMP TABLE phases (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL, name TEXT NOT NULL, begin_ns INTEGER NOT NULL, end_ns INTEGER)",
    ),
    (
        "site_stacks",
        "CREATE TEMP TABLE site_stacks (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL)",
    ),
    (
        "site_frames",
        "CREATE TEMP TABLE site_frames (stack_id INTEGER NOT NULL, position INTEGER NOT NULL, address INTEGER NOT NULL, module TEXT, build_id TEXT, file_offset INTEGER, function TEXT, file TEXT, line INTEGER, inlined INTEGER NOT NULL DEFAULT 0)",
    ),
    (
        "sites",
        "CREATE TEMP TABLE sites (process_id INTEGER NOT NULL, t_ns INTEGER NOT NULL, stack_id INTEGER NOT NULL, cause TEXT NOT NULL, samples INTEGER NOT NULL, bytes INTEGER NOT NULL)",
    ),
];

/// Lets a read-only connection read an older store as if it had the current schema: temporary
/// views (which shadow the store's tables of the same name) add the missing columns, and
/// temporary tables stand in for missing ones. Nothing is written to the store.
pub fn stand_ins(conn: &Connection) -> rusqlite::Result<()> {
    let has_table = |table: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT COUNT(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    for (table, create) in ADDED_TABLES {
        if !has_table(table)? {
            conn.execute_batch(create)?;
        }
    }
    let mut tables: Vec<&str> = ADDED_COLUMNS.iter().map(|(t, _, _)| *t).collect();
    tables.dedup();
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        let present: Vec<String> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_info('{table}', 'main')"
            ))?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let missing: Vec<String> = ADDED_COLUMNS
            .iter()
            .filter(|(t, c, _)| *t == table && !present.iter().any(|p| p == c))
            .map(|(_, c, expr)| format!("{expr} AS {c}"))
            .collect();
        if !missing.is_empty() {
            conn.execute_batch(&format!(
                "CREATE TEMP VIEW {table} AS SELECT s.*, {} FROM main.{table} s",
                missing.join(", ")
            ))?;
        }
    }
    Ok(())
}

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`CURRENT_VERSION`], or refuses a newer one.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CURRENT_VERSION {
        return Err(MigrateError::NewerSchema {
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    if version == 0 {
        let app: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let tables: i64 = tx.query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if app != APPLICATION_ID && tables > 0 {
            return Err(MigrateError::NotAStore);
        }
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()?;
    Ok(())
}

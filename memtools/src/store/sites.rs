//! Growth sites in the store: stacks written once per session, counts per process, stack,
//! cause and time bucket, read back summed over a window.

use rusqlite::params;

use super::writer::{ProcessId, SessionWriter};
use super::{Store, StoreError};
use crate::sites::{Frame, Site, SiteCause, SiteCount, Stack, Window};

impl SessionWriter<'_> {
    /// Adds what the kernel counted for one stack of one process. Counts for a bucket already
    /// written are added to it (the recorder drains the kernel's map more than once a bucket).
    pub fn add_sites(
        &mut self,
        process: ProcessId,
        stack: &Stack,
        counts: &[SiteCount],
    ) -> Result<(), StoreError> {
        self.begin()?;
        let stack_id = match self.stacks.get(stack) {
            Some(id) => *id,
            None => {
                let id = insert_stack(&self.store.conn, self.session_id, stack)
                    .map_err(|e| self.store.err(e))?;
                self.stacks.insert(stack.clone(), id);
                id
            }
        };
        let conn = &self.store.conn;
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO sites (process_id, t_ns, stack_id, cause, samples, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (process_id, t_ns, stack_id, cause) DO UPDATE SET samples = samples + excluded.samples, bytes = bytes + excluded.bytes",
            )
            .map_err(|e| self.store.err(e))?;
        for c in counts {
            stmt.execute(params![
                process,
                c.time,
                stack_id,
                c.cause.name(),
                c.samples as i64,
                c.bytes as i64
            ])
            .map_err(|e| self.store.err(e))?;
        }
        Ok(())
    }
}

fn insert_stack(conn: &rusqlite::Connection, session: i64, stack: &Stack) -> rusqlite::Result<i64> {
    conn.prepare_cached("INSERT INTO site_stacks (session_id) VALUES (?1)")?
        .execute([session])?;
    let id = conn.last_insert_rowid();
    insert_frames(conn, id, stack)?;
    Ok(id)
}

/// Writes a stack's frames, innermost first.
pub(super) fn insert_frames(
    conn: &rusqlite::Connection,
    id: i64,
    stack: &Stack,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO site_frames (stack_id, position, address, module, build_id, file_offset, function, file, line, inlined) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (i, f) in stack.iter().enumerate() {
        stmt.execute(params![
            id,
            i as i64,
            f.address as i64,
            f.module,
            f.build_id,
            f.file_offset.map(|o| o as i64),
            f.function,
            f.file,
            f.line,
            f.inlined
        ])?;
    }
    Ok(())
}

impl Store {
    /// Whether a session recorded growth sites at all (recorded with eBPF): a session without
    /// them reads as it always did.
    pub fn has_sites(&self, session: i64) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sites JOIN processes p ON sites.process_id = p.id WHERE p.session_id = ?1)",
                [session],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// A process's growth sites of the given causes within a window (by the start of the
    /// bucket their samples fell in), one per stack and cause summed over buckets, most bytes
    /// first. Causes whose bytes measure different things (see [`SiteCause::measure`]) are
    /// best read apart.
    pub fn sites(
        &self,
        process: ProcessId,
        window: Window,
        causes: &[SiteCause],
    ) -> Result<Vec<Site>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT stack_id, cause, SUM(samples), SUM(bytes) FROM sites
                 WHERE process_id = ?1 AND t_ns >= ?2 AND t_ns <= ?3
                 GROUP BY stack_id, cause ORDER BY SUM(bytes) DESC, SUM(samples) DESC, stack_id, cause",
            )
            .map_err(|e| self.err(e))?;
        let totals: Vec<(i64, String, i64, i64)> = stmt
            .query_map(
                params![
                    process,
                    window.start.unwrap_or(i64::MIN),
                    window.end.unwrap_or(i64::MAX)
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        let mut sites = Vec::with_capacity(totals.len());
        for (stack_id, cause, samples, bytes) in totals {
            // A cause a later version wrote, which this build cannot say anything of.
            let Some(cause) = SiteCause::from_name(&cause).filter(|c| causes.contains(c)) else {
                continue;
            };
            sites.push(Site {
                stack: self.stack(stack_id)?,
                cause,
                samples: samples.max(0) as u64,
                bytes: bytes.max(0) as u64,
            });
        }
        Ok(sites)
    }

    pub(super) fn stack(&self, id: i64) -> Result<Stack, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT address, module, build_id, file_offset, function, file, line, inlined
                 FROM site_frames WHERE stack_id = ?1 ORDER BY position",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([id], |r| {
            Ok(Frame {
                address: r.get::<_, i64>(0)? as u64,
                module: r.get(1)?,
                build_id: r.get(2)?,
                file_offset: r.get::<_, Option<i64>>(3)?.map(|o| o as u64),
                function: r.get(4)?,
                file: r.get(5)?,
                line: r.get(6)?,
                inlined: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| self.err(e))
    }
}

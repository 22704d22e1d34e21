//! Growth sites symbolized again: a session copied from the machine that recorded it (a CI
//! runner with stripped binaries) names its frames where the binaries with symbols are.

use rusqlite::params;

use super::sites::insert_frames;
use super::{Store, StoreError};
use crate::sites::Stack;

impl Store {
    /// Every stack a session's growth sites refer to, with its id, innermost frame first.
    pub fn site_stacks(&self, session: i64) -> Result<Vec<(i64, Stack)>, StoreError> {
        let ids: Vec<i64> = self
            .conn
            .prepare("SELECT id FROM site_stacks WHERE session_id = ?1 ORDER BY id")
            .and_then(|mut stmt| {
                stmt.query_map([session], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| self.err(e))?;
        ids.into_iter()
            .map(|id| Ok((id, self.stack(id)?)))
            .collect()
    }

    /// Replaces the frames of the given stacks, all in one transaction: a failure (a full disk)
    /// leaves every stack as it was.
    pub fn replace_site_frames(&self, stacks: &[(i64, Stack)]) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for (id, stack) in stacks {
            tx.execute("DELETE FROM site_frames WHERE stack_id = ?1", params![id])
                .and_then(|_| insert_frames(&tx, *id, stack))
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

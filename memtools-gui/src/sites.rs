//! What the "where it grows" panel shows, read off the UI thread: one process's growth sites
//! (recorded with eBPF) in one time window, summarized for the table and merged for the flame
//! graph. A reply is computed once per (process, window) and kept until either changes.

use std::path::Path;

use memtools::model::{NS_PER_SEC, TimeNs};
use memtools::sites::{SiteSummary, Window};
use memtools::store::{Store, StoreError};

use crate::flame::Tree;
use crate::problem::Problem;

/// Which part of the recording the panel counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SiteRange {
    /// The leak window of the process's verdict (the whole recording when it does not leak).
    Leak,
    /// The whole recording.
    All,
    /// The plot's visible time range, following its pans and zooms.
    View,
    /// A range shift-dragged on the plot, in seconds since the session started.
    Selected(f64, f64),
}

/// One question to the store: a process's sites in a window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SitesQuery {
    pub session: i64,
    pub process: i64,
    pub window: Window,
}

/// The answer, ready to draw.
#[derive(Debug)]
pub struct SitesData {
    pub query: SitesQuery,
    /// Every sampled stack in the window (distinct stacks).
    pub stacks: usize,
    pub bytes: u64,
    pub samples: u64,
    /// The table: sites named after the program's own frame, largest first. Empty when the
    /// stacks are shallow.
    pub summary: Vec<SiteSummary>,
    /// Stacks came back one frame deep: no site can be named (`memtools::sites::SHALLOW_STACKS`).
    pub shallow: bool,
    pub tree: Tree,
}

/// Reads and prepares one process's sites in a window.
pub fn read(path: &Path, query: SitesQuery) -> Result<SitesData, Problem> {
    let store = Store::open_read_only(path).map_err(|e| Problem::from_store(&e))?;
    let sites = store
        .sites(
            query.process,
            query.window,
            // Resident growth, as the verdicts name it: reserved address space is not added in.
            &[memtools::sites::SiteCause::Fault],
        )
        .map_err(|e: StoreError| Problem::from_store(&e))?;
    let shallow = memtools::sites::shallow(&sites);
    Ok(SitesData {
        query,
        stacks: sites.len(),
        bytes: sites.iter().map(|s| s.bytes).sum(),
        samples: sites.iter().map(|s| s.samples).sum(),
        summary: memtools::sites::summarize(&sites),
        shallow,
        tree: Tree::of(&sites),
    })
}

/// A time in seconds since the session started (the plot's x) as a stored time.
pub fn time_at(start: TimeNs, seconds: f64) -> TimeNs {
    start.saturating_add((seconds.max(0.0) * NS_PER_SEC as f64) as TimeNs)
}

//! What the recorder says about itself, handed over as it records.
//!
//! The recorder publishes a [`RecorderView`] a few times a second (its progress hook); the
//! exporter copies it when it builds a snapshot. The lock is held for a copy on either side, so
//! neither ever waits on the other for longer than that, and no HTTP client ever touches it.

use std::sync::Mutex;
use std::time::Duration;

/// The recorder's own figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecorderView {
    /// The session being recorded, once it has begun.
    pub session_id: Option<i64>,
    /// `ebpf` or `procfs`, once known.
    pub backend: String,
    pub samples_written: u64,
    pub processes_followed: u64,
    pub events_lost: u64,
    /// Its last look at the processes and write to the store.
    pub last_drain: Duration,
    pub store_bytes: u64,
    /// Samples deleted by retention.
    pub samples_pruned: u64,
}

/// Where the recorder publishes its figures for the exporter.
#[derive(Debug, Default)]
pub struct RecorderStats {
    view: Mutex<RecorderView>,
}

impl RecorderStats {
    /// Replaces the recorder's figures (what retention pruned is kept).
    pub fn publish(&self, view: RecorderView) {
        if let Ok(mut v) = self.view.lock() {
            let pruned = v.samples_pruned;
            *v = RecorderView {
                samples_pruned: pruned.max(view.samples_pruned),
                ..view
            };
        }
    }

    /// Counts samples deleted by retention.
    pub fn add_pruned(&self, samples: u64) {
        if let Ok(mut v) = self.view.lock() {
            v.samples_pruned += samples;
        }
    }

    /// A copy of the figures now.
    pub fn view(&self) -> RecorderView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

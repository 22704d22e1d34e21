//! Following a session that is still being recorded: about once a second, the samples newer
//! than those already read are appended and the whole updated data sent to the UI, until the
//! session ends, the store goes away or a newer load cancels it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

use memtools::model::{Metric, TimeNs};
use memtools::store::{Phase, ProcessRow, SessionRow, as_recorded};

use crate::loader::{History, LIVE_POLL, Loaded, Reply, open, read_after, send};

/// What a live session held at the last poll.
pub(crate) struct Snapshot {
    session: SessionRow,
    metric: Metric,
    /// As stored: held on the grid only when rebuilt, so new samples append to the raw ones.
    histories: Vec<(ProcessRow, Vec<(TimeNs, u64)>)>,
    phases: Vec<Phase>,
    has_sites: bool,
}

impl Snapshot {
    pub(crate) fn of(l: &Loaded) -> Snapshot {
        Snapshot {
            session: l.session.clone(),
            metric: l.metric,
            histories: l.owned_histories(),
            phases: l.phases.clone(),
            has_sites: l.has_sites,
        }
    }
}

/// Polls a session being recorded about once a second and sends the grown data until it ends,
/// the store goes away, or a newer load cancels it.
pub(crate) fn follow(
    path: &Path,
    session: i64,
    mut snap: Snapshot,
    cancel: &AtomicBool,
    tx: &Sender<Reply>,
    ctx: &Option<egui::Context>,
    job: u64,
) {
    let Ok(store) = open(path) else { return };
    let never = AtomicBool::new(false);
    let publish = |snap: &Snapshot| {
        send(
            tx,
            ctx,
            Reply::Live {
                job,
                loaded: rebuild(snap),
            },
        )
    };
    while !cancel.load(Ordering::Relaxed) {
        std::thread::sleep(LIVE_POLL);
        let Ok(row) = store.session(session) else {
            return;
        };
        if row.samples == snap.session.samples && row.processes == snap.session.processes {
            if row.end.is_some() && snap.session.end.is_none() {
                snap.session = row;
                publish(&snap);
                return;
            }
            continue;
        }
        let Ok(processes) = store.processes(session) else {
            return;
        };
        for process in processes {
            let at = snap.histories.iter().position(|h| h.0.id == process.id);
            let i = at.unwrap_or_else(|| {
                snap.histories.push((process.clone(), Vec::new()));
                snap.histories.len() - 1
            });
            let h = &mut snap.histories[i];
            h.0 = process.clone();
            if read_after(&store, &process, snap.metric, &mut h.1, &never, &mut |_| {}).is_err() {
                return;
            }
        }
        let ended = row.end.is_some();
        snap.session = row;
        if let Ok(phases) = store.phases(session) {
            snap.phases = phases;
        }
        if let Ok(has) = store.has_sites(session) {
            snap.has_sites = has;
        }
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        publish(&snap);
        if ended {
            return;
        }
    }
}

fn rebuild(snap: &Snapshot) -> Loaded {
    let histories = snap
        .histories
        .iter()
        .map(|(p, points)| {
            let points = as_recorded(&snap.session, p, points.clone());
            History::new(p.clone(), points, snap.session.start)
        })
        .collect();
    Loaded {
        session: snap.session.clone(),
        metric: snap.metric,
        histories,
        phases: snap.phases.clone(),
        has_sites: snap.has_sites,
    }
}

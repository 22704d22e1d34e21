//! Where the refresher puts up expositions and scrapes take them.
//!
//! The store is read when a scrape finds the exposition older than it should be (and for the
//! live analysis, at its own pace), not on a timer: an exporter nobody scrapes reads the store
//! only for the analysis. A scrape that finds it stale wakes the refresher and waits for the new
//! one a short while ([`WAIT_FRESH`]), then takes whatever is up: a slow refresh never holds a
//! scrape long, and no scrape ever holds the refresher or the recorder.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::encode::Exposition;

/// The longest a scrape waits for a fresh exposition.
pub const WAIT_FRESH: Duration = Duration::from_secs(2);

/// What wakes the refresher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A scrape found the exposition stale.
    Scrape,
    /// The exporter stops.
    Stop,
}

#[derive(Debug)]
struct Posted {
    exposition: Arc<Exposition>,
    at: Instant,
    /// How long it counts as fresh.
    fresh_for: Duration,
}

/// The newest exposition, and the way to ask for a newer one.
#[derive(Debug)]
pub struct Board {
    posted: Mutex<Posted>,
    published: tokio::sync::watch::Sender<u64>,
    wake: mpsc::Sender<Wake>,
}

impl Board {
    /// A board showing `first`, waking the refresher through `wake`.
    pub fn new(first: Exposition, wake: mpsc::Sender<Wake>) -> Board {
        Board {
            posted: Mutex::new(Posted {
                exposition: Arc::new(first),
                at: Instant::now(),
                fresh_for: Duration::ZERO,
            }),
            published: tokio::sync::watch::Sender::new(0),
            wake,
        }
    }

    /// Puts up a new exposition, fresh for `fresh_for`, and tells the scrapes waiting for it.
    pub fn publish(&self, exposition: Exposition, fresh_for: Duration) {
        if let Ok(mut p) = self.posted.lock() {
            *p = Posted {
                exposition: Arc::new(exposition),
                at: Instant::now(),
                fresh_for,
            };
        }
        self.published.send_modify(|n| *n += 1);
    }

    /// The newest exposition.
    pub fn latest(&self) -> Arc<Exposition> {
        self.posted
            .lock()
            .map(|p| Arc::clone(&p.exposition))
            .unwrap_or_default()
    }

    /// Whether the newest exposition is still fresh.
    pub fn is_fresh(&self) -> bool {
        self.posted
            .lock()
            .is_ok_and(|p| p.at.elapsed() < p.fresh_for)
    }

    /// The newest exposition, fresh if the refresher makes one within [`WAIT_FRESH`].
    pub async fn fresh(&self) -> Arc<Exposition> {
        if !self.is_fresh() {
            let mut published = self.published.subscribe();
            let _ = self.wake.send(Wake::Scrape);
            let _ = tokio::time::timeout(WAIT_FRESH, published.changed()).await;
        }
        self.latest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(text: &'static str) -> Exposition {
        Exposition {
            openmetrics: bytes::Bytes::from_static(text.as_bytes()),
            text: bytes::Bytes::from_static(text.as_bytes()),
        }
    }

    #[test]
    fn a_stale_exposition_wakes_the_refresher_and_the_scrape_gets_the_new_one() {
        let (wake, woken) = mpsc::channel();
        let board = Arc::new(Board::new(exposition("old"), wake));
        assert!(!board.is_fresh(), "the first one is never fresh");
        let refresher = {
            let board = Arc::clone(&board);
            std::thread::spawn(move || {
                assert_eq!(woken.recv(), Ok(Wake::Scrape));
                board.publish(exposition("new"), Duration::from_secs(60));
                woken
            })
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let got = runtime.block_on(board.fresh());
        assert_eq!(&got.openmetrics[..], b"new");
        let woken = refresher.join().unwrap();
        // Fresh now: the next scrape takes it without waking anyone.
        assert!(board.is_fresh());
        let again = runtime.block_on(board.fresh());
        assert_eq!(&again.openmetrics[..], b"new");
        assert!(woken.try_recv().is_err());
    }
}

//! memtools-exporter: a recording as Prometheus metrics, its verdicts included.
//!
//! It follows a session of a store as the recorder writes it (a reader of `memtools`, like the
//! viewer: no aya, no recorder), keeps each running process's recent history in a sliding
//! window, re-runs `detect`'s analysis over them in the background, and serves the running
//! processes' memory, their verdicts and the recorder's own figures on `GET /metrics`, in
//! OpenMetrics (encoded by `prometheus-client`) or the Prometheus text format. memtools-user's
//! `serve` and `record --listen` start it beside the recorder, which hands it its figures
//! through [`RecorderStats`].
//!
//! - [`catalogue`]: which series from which stored metrics, names and help;
//! - [`snapshot`]: what one scrape shows, and the cardinality rules;
//! - [`follow`]: reading the store, the windows ([`window`]), the live analysis;
//! - [`encode`]: the exposition; [`board`]: where the newest one waits; [`http`]: serving it.

pub mod board;
pub mod catalogue;
pub mod encode;
pub mod follow;
pub mod http;
pub mod snapshot;
pub mod stats;
pub mod window;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use board::Board;
pub use follow::{FollowConfig, Follower};
pub use http::Limits;
pub use snapshot::Snapshot;
pub use stats::{RecorderStats, RecorderView};

use board::Wake;
use encode::Exposition;

/// The address `serve` listens on unless told otherwise: loopback, Prometheus' port for it.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9465";

/// What can stop the exporter from starting.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the exporter's threads: {0}")]
    Threads(#[source] std::io::Error),
}

/// How the exporter runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub follow: FollowConfig,
    /// How old the data a scrape gets may be: a scrape finding it older has the store read again
    /// (never more often than this, nor than ten times what a read takes). Without scrapes the
    /// store is read only for the live analysis.
    pub refresh_every: Duration,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            follow: FollowConfig::default(),
            refresh_every: Duration::from_secs(1),
            limits: Limits::default(),
        }
    }
}

/// Binds the listening socket: done before recording starts, so a port in use is said at once.
pub fn bind(addr: &str) -> Result<TcpListener, ExporterError> {
    TcpListener::bind(addr).map_err(|source| ExporterError::Listen {
        addr: addr.to_string(),
        source,
    })
}

/// A running exporter: a refresher thread and an HTTP thread, stopped by [`Exporter::stop`]
/// (or when dropped).
pub struct Exporter {
    addr: SocketAddr,
    stop_refresh: Option<mpsc::Sender<Wake>>,
    stop_http: Option<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Exporter {
    /// Starts serving on `listener` what the recorder writes to the store at `store`, its own
    /// figures taken from `stats` (the session to follow among them, once it has begun).
    pub fn start(
        listener: TcpListener,
        store: &Path,
        config: Config,
        stats: Arc<RecorderStats>,
    ) -> Result<Exporter, ExporterError> {
        let addr = listener.local_addr().map_err(ExporterError::Threads)?;
        let (wake, woken) = mpsc::channel();
        let first = Exposition::of(Arc::new(Snapshot {
            recorder: stats.view(),
            top: config.follow.top,
            ..Snapshot::default()
        }));
        let board = Arc::new(Board::new(first, wake.clone()));
        let refresher = {
            let (board, store, config) = (Arc::clone(&board), store.to_path_buf(), config.clone());
            std::thread::Builder::new()
                .name("memtools-exporter".into())
                .spawn(move || refresh_loop(&store, &config, &stats, &board, &woken))
                .map_err(ExporterError::Threads)?
        };
        let (stop_http, stop) = tokio::sync::oneshot::channel();
        let limits = config.limits;
        let http = std::thread::Builder::new()
            .name("memtools-http".into())
            .spawn(move || {
                if let Err(e) = http::serve(listener, board, limits, stop) {
                    eprintln!("memtools: the exporter stopped serving: {e}");
                }
            })
            .map_err(ExporterError::Threads)?;
        Ok(Exporter {
            addr,
            stop_refresh: Some(wake),
            stop_http: Some(stop_http),
            threads: vec![refresher, http],
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for its threads.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(s) = self.stop_refresh.take() {
            let _ = s.send(Wake::Stop);
        }
        if let Some(s) = self.stop_http.take() {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Wall-clock time in ns, the recording's clock.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// How often a failing refresh is said, at most.
const SAY_ERRORS_EVERY: Duration = Duration::from_secs(60);

/// Reads, analyses and publishes when a scrape wants fresher data and at the live analysis's
/// pace, until told to stop.
fn refresh_loop(
    store: &Path,
    config: &Config,
    stats: &RecorderStats,
    board: &Board,
    woken: &mpsc::Receiver<Wake>,
) {
    let mut follower: Option<Follower> = None;
    let mut said: Option<Instant> = None;
    let mut took = Duration::ZERO;
    let mut last = Instant::now();
    loop {
        let periodic = config.follow.analysis_every.max(took * 10);
        let wait = periodic.saturating_sub(last.elapsed());
        match woken.recv_timeout(wait) {
            Ok(Wake::Scrape) if board.is_fresh() => continue,
            Ok(Wake::Scrape) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        last = Instant::now();
        let recorder = stats.view();
        let result = match (recorder.session_id, follower.as_mut()) {
            (None, _) => Ok(Snapshot {
                recorder,
                top: config.follow.top,
                ..Snapshot::default()
            }),
            (Some(_), Some(f)) => f.refresh(now_ns(), recorder),
            (Some(id), None) => Follower::open(store, id, config.follow.clone())
                .and_then(|f| follower.insert(f).refresh(now_ns(), recorder)),
        };
        took = last.elapsed();
        match result {
            Ok(snapshot) => {
                let fresh_for = config.refresh_every.max(took * 10);
                board.publish(Exposition::of(Arc::new(snapshot)), fresh_for);
            }
            // The recorder goes on; the last exposition stays up; said once a minute.
            Err(e) => {
                if said.is_none_or(|t| t.elapsed() >= SAY_ERRORS_EVERY) {
                    eprintln!("memtools: the exporter cannot read the store: {e}");
                    said = Some(Instant::now());
                }
            }
        }
    }
}

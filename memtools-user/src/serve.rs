//! The recorder as a Prometheus exporter: `serve` and `record --listen` start the exporter
//! (memtools-exporter) beside the recorder, hand it the recorder's figures from its progress
//! hook, and, for `serve`, keep the store to its retention in the background.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use memtools::store::{Pace, Store};
use memtools_exporter::{Config, Exporter, FollowConfig, RecorderStats, RecorderView};

use crate::cli::{ExportArgs, ServeArgs};
use crate::record::{self, Progress, RecordOptions, Target};

/// How often retention runs a pass.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The shortest window the live analysis may judge: it needs 30 s of a life past its start-up.
const MIN_WINDOW: Duration = Duration::from_secs(60);
/// The live analysis at most this often, whatever is asked.
const MIN_ANALYSIS_EVERY: Duration = Duration::from_secs(1);

/// `serve`: records until stopped (SIGINT, SIGTERM) with the exporter and retention beside it.
pub fn run(args: ServeArgs) -> Result<i32> {
    let target = match (args.pid.is_empty(), args.name.is_empty()) {
        (true, true) => Target::All,
        (false, true) => Target::Pids(args.pid),
        (true, false) => Target::Names(args.name),
        (false, false) => {
            bail!("serve one thing at a time: `--all`, `--pid PID` or `--name PATTERN`")
        }
    };
    let config = config(&args.export)?;
    if args.retain < config.follow.window {
        bail!(
            "--retain {} is shorter than --window {}: the analysis would judge histories retention already cut",
            humantime::format_duration(args.retain),
            humantime::format_duration(config.follow.window)
        );
    }
    let options = RecordOptions {
        target,
        backend: crate::commands::backend_choice(args.backend),
        rss_events: false,
        interval: args.interval,
        duration: None,
        // Growth sites are for a recorded command's leak; serve follows a machine.
        sites: None,
    };
    let store = Store::open(&args.store.store)?;
    let serving = Serving::start(&args.listen, &args.store.store, config, Some(args.retain))?;
    eprintln!(
        "memtools: serving {} (store {}, samples kept {})",
        serving.url(),
        store.path().display(),
        humantime::format_duration(args.retain)
    );
    let outcome = record::record(
        &store,
        &options,
        |p| serving.progress(p),
        |line| eprintln!("memtools: {line}"),
    );
    serving.stop();
    let outcome = outcome?;
    eprintln!(
        "memtools: session {} ({}): {}, {} in {} -> {}",
        outcome.session_id,
        outcome.backend,
        memtools::units::processes(outcome.processes as u64),
        memtools::units::samples(outcome.samples),
        memtools::units::duration_ns(outcome.duration.as_nanos() as i64),
        store.path().display()
    );
    Ok(0)
}

/// The exporter's settings from the command line, checked.
pub fn config(export: &ExportArgs) -> Result<Config> {
    let defaults = FollowConfig::default();
    let follow = FollowConfig {
        top: export.top.unwrap_or(defaults.top),
        window: export.window.unwrap_or(defaults.window),
        analysis_every: export.analysis_every.unwrap_or(defaults.analysis_every),
        ..defaults
    };
    if follow.top == 0 {
        bail!("--top 0 would export no process one by one; give at least 1");
    }
    if follow.window < MIN_WINDOW {
        bail!(
            "--window {} is too short: the analysis needs at least 1m of history",
            humantime::format_duration(follow.window)
        );
    }
    if follow.analysis_every < MIN_ANALYSIS_EVERY {
        bail!(
            "--analysis-every {} is too often: at least 1s",
            humantime::format_duration(follow.analysis_every)
        );
    }
    Ok(Config {
        follow,
        ..Config::default()
    })
}

/// The exporter, and retention when asked, running beside a recording.
pub struct Serving {
    stats: Arc<RecorderStats>,
    exporter: Exporter,
    pruner: Option<Pruner>,
}

impl Serving {
    /// Binds `listen` (so a port in use is said before anything is recorded) and starts the
    /// exporter on the store at `store`, and retention when `retain` is given.
    pub fn start(
        listen: &str,
        store: &Path,
        config: Config,
        retain: Option<Duration>,
    ) -> Result<Serving> {
        let listener = memtools_exporter::bind(listen)?;
        let stats = Arc::new(RecorderStats::default());
        let exporter = Exporter::start(listener, store, config, Arc::clone(&stats))?;
        let pruner = retain
            .map(|r| Pruner::start(store.to_path_buf(), r, Arc::clone(&stats)))
            .transpose()?;
        Ok(Serving {
            stats,
            exporter,
            pruner,
        })
    }

    /// Where the metrics are served.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.exporter.local_addr())
    }

    /// Hands the recorder's figures to the exporter (and the session to retention).
    pub fn progress(&self, p: &Progress) {
        self.stats.publish(RecorderView {
            session_id: Some(p.session_id),
            backend: p.backend.to_string(),
            samples_written: p.samples,
            processes_followed: p.processes as u64,
            events_lost: p.events_lost,
            last_drain: p.drain,
            store_bytes: p.store_bytes,
            samples_pruned: 0,
        });
    }

    /// Stops serving and retention, waiting for their threads.
    pub fn stop(self) {
        if let Some(p) = self.pruner {
            p.stop();
        }
        self.exporter.stop();
    }
}

/// Retention in the background: a pass a minute over the store, on its own connection.
struct Pruner {
    stop: Arc<AtomicBool>,
    wake: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Pruner {
    fn start(store: PathBuf, retain: Duration, stats: Arc<RecorderStats>) -> Result<Pruner> {
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, sleep) = mpsc::channel::<()>();
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("memtools-retention".into())
            .spawn(move || prune_loop(&store, retain, &stats, &flag, &sleep))
            .context("cannot start the retention thread")?;
        Ok(Pruner { stop, wake, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.wake);
        let _ = self.thread.join();
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Marks the session being recorded with its retention once it has begun, then prunes every
/// retained session once a minute until stopped.
fn prune_loop(
    path: &Path,
    retain: Duration,
    stats: &RecorderStats,
    stop: &AtomicBool,
    sleep: &mpsc::Receiver<()>,
) {
    let retain_ns = i64::try_from(retain.as_nanos()).unwrap_or(i64::MAX);
    let mut marked = None;
    let mut store = None;
    let mut said = false;
    loop {
        let session = stats.view().session_id;
        let pause = if session.is_none() {
            // Not begun yet.
            Duration::from_millis(200)
        } else {
            let result = (|| -> Result<()> {
                let s = match store.as_mut() {
                    Some(s) => s,
                    None => store.insert(Store::open(path)?),
                };
                if marked != session {
                    if let Some(id) = session {
                        s.set_retention(id, Some(retain))?;
                    }
                    marked = session;
                }
                let cutoff = now_ns().saturating_sub(retain_ns);
                let pruned = s.prune(cutoff, session, &Pace::default(), || {
                    stop.load(Ordering::Relaxed)
                })?;
                stats.add_pruned(pruned.samples);
                Ok(())
            })();
            if let Err(e) = result
                && !said
            {
                // Said once: the recorder goes on, the store grows until it can be pruned.
                eprintln!("memtools: retention cannot prune the store: {e:#}");
                said = true;
            }
            PRUNE_EVERY
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match sleep.recv_timeout(pause) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

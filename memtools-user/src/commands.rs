//! Carrying out the commands of [`crate::cli`]: the edge where errors become messages.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cli::{
    AlgoArg, BackendArg, BaselineArg, Cli, Command, DetectArgs, ExportFormat, Format, RecordArgs,
    TopArgs,
};
use crate::live::LiveRecording;
use crate::record::limits;
use crate::record::{self, BackendChoice, Progress, RecordError, RecordOptions, Target};
use memtools::analysis::{Algo, Params};
use memtools::baseline;
use memtools::detect::{self, MetricChoice};
use memtools::model::Metric;
use memtools::report::summary::HistorySummary;
use memtools::report::{jsonl, memorytools, output, text, verdicts};
use memtools::store::{ForEachError, Store};
use memtools::units;

/// Runs a parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Record(args) => record(args),
        Command::Sessions { store, format } => {
            let store = Store::open_read_only(&store.store)?;
            let sessions = store.sessions()?;
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => {
                    let json: Vec<_> = sessions.iter().map(text::SessionJson::of).collect();
                    serde_json::to_writer_pretty(&mut out, &json)?;
                    writeln!(out)?;
                }
                Format::Text if sessions.is_empty() => {
                    writeln!(out, "{}: no sessions yet", store.path().display())?;
                }
                Format::Text => writeln!(out, "{}", text::sessions_table(&sessions))?,
            }
            Ok(0)
        }
        Command::Show {
            store,
            session,
            metric,
        } => {
            let store = Store::open_read_only(&store.store)?;
            let id = store.resolve(session.session)?;
            let session = store.session(id)?;
            let metric = metric.unwrap_or(session.default_metric());
            let mut rows: Vec<_> = store
                .series(id, metric)?
                .into_iter()
                .map(|(p, points)| (p, HistorySummary::of(&points)))
                .collect();
            rows.sort_by_key(|(p, s)| (std::cmp::Reverse(s.map_or(i128::MIN, |s| s.growth)), p.id));
            let phases = store.phases(id)?;
            let mut out = std::io::stdout().lock();
            write!(out, "{}", text::session_header(&session, metric))?;
            writeln!(out, "{}", text::processes_table(&rows, metric))?;
            if !phases.is_empty() {
                writeln!(out, "{}", text::phases_table(&phases, session.start))?;
            }
            Ok(0)
        }
        Command::Detect(args) => detect(args),
        Command::Serve(args) => crate::serve::run(args),
        Command::Top(args) => top(args),
        Command::Sites(args) => crate::sites::run(args),
        Command::Resymbolize(args) => crate::resymbolize::run(args),
        Command::Import { store, files } => {
            let mut store = Store::open(&store.store)?;
            // One transaction for every file: all are imported, or none.
            let ids = memorytools::import_files(&mut store, &files).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (nothing was imported: the files of one import are kept all together or not at all)"
                )
            })?;
            for (file, id) in files.iter().zip(ids) {
                let s = store.session(id)?;
                println!(
                    "imported {} as session {id}: {}, {}",
                    file.display(),
                    units::processes(s.processes),
                    units::samples(s.samples)
                );
            }
            Ok(0)
        }
        Command::Export {
            store,
            session,
            format,
            metric,
            output,
        } => {
            let store = Store::open_read_only(&store.store)?;
            let id = store.resolve(session.session)?;
            export(&store, id, format, metric, output.as_deref())?;
            Ok(0)
        }
    }
}

fn export(
    store: &Store,
    id: i64,
    format: ExportFormat,
    metric: Option<Metric>,
    output: Option<&Path>,
) -> Result<()> {
    // A file is written whole under a new name and renamed over the target at the end: never
    // through a link, never half a file at the path, the old file intact on failure.
    let mut file = output.map(output::AtomicFile::create).transpose()?;
    let rows = {
        let mut sink: Box<dyn Write> = match file.as_mut() {
            Some(f) => Box::new(std::io::BufWriter::new(f)),
            None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        };
        let rows = match format {
            ExportFormat::Csv => memorytools::export(store, id, metric, &mut sink),
            ExportFormat::Json => jsonl::export(store, id, metric, &mut sink),
        };
        let rows = rows.and_then(|rows| sink.flush().map(|()| rows).map_err(Into::into));
        match rows {
            Ok(rows) => rows,
            // A reader that stopped early (`| head`) is not an error.
            Err(ForEachError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("exporting session {id}")),
        }
    };
    if let (Some(f), Some(path)) = (file, output) {
        f.commit()?;
        eprintln!("wrote {rows} samples of session {id} to {}", path.display());
    }
    Ok(())
}

fn detect(args: DetectArgs) -> Result<i32> {
    let store = Store::open_read_only(&args.store.store)?;
    let id = store.resolve(args.session.session)?;
    let params = Params {
        algo: match args.algo {
            AlgoArg::Combined => Algo::Combined,
            AlgoArg::Lbr => Algo::Lbr,
            AlgoArg::Trend => Algo::Trend,
            AlgoArg::Cpd => Algo::Cpd,
        },
        r2_threshold: args.r2,
        min_window: args.min_window,
        critical_time_s: args.critical_time.as_secs_f64(),
        gap_threshold_s: args.gap.map(|g| g.as_secs_f64()),
        ..Params::default()
    };
    params.validate()?;
    let this_machine = limits::machine_memory().unwrap_or(16 << 30);
    let choice = args.metric.unwrap_or(MetricChoice::One(None));
    let mut report = detect::analyse(&store, id, choice, &params, args.limit, this_machine)?;
    report.set_budgets(args.fail_on_peak);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => write!(out, "{}", verdicts::text(&report, out.is_terminal()))?,
        Format::Json => writeln!(out, "{}", verdicts::json(&report)?)?,
    }
    let over_budget = report.over_budget().next().is_some();
    Ok(if (args.fail_on_leak && report.has_leak()) || over_budget {
        3
    } else {
        0
    })
}

/// The backend `--backend` asks for.
pub(crate) fn backend_choice(arg: BackendArg) -> BackendChoice {
    match arg {
        BackendArg::Auto => BackendChoice::Auto,
        BackendArg::Ebpf => BackendChoice::Ebpf,
        BackendArg::Procfs => BackendChoice::Procfs,
    }
}

/// The growth sites a recording asks for: required with `--sites`, by default for a command or
/// `--pid` (a leak's code is what `record` is for there; following a whole machine, the maps
/// of every process it starts would be read), none with `--no-sites`.
fn sites_request(args: &RecordArgs, by_default: bool) -> Option<record::SitesRequest> {
    use crate::record::ebpf::sites::{FaultSampling, Sampler};
    (args.sites || (by_default && !args.no_sites)).then_some(record::SitesRequest {
        sampling: FaultSampling {
            period: args.sites_period,
            sampler: match args.sites_sampler {
                crate::cli::SamplerArg::PerfEvent => Sampler::PerfEvent,
                crate::cli::SamplerArg::Countdown => Sampler::Countdown,
            },
        },
        required: args.sites,
    })
}

fn record(args: RecordArgs) -> Result<i32> {
    let given = [
        !args.command.is_empty(),
        !args.pid.is_empty(),
        args.all,
        !args.name.is_empty(),
    ];
    // A command or pids (the target is checked just below).
    let sites = sites_request(&args, given[0] || given[1]);
    let target = match given {
        [true, false, false, false] => Target::Command(record::Command { argv: args.command }),
        [false, true, false, false] => Target::Pids(args.pid),
        [false, false, true, false] => Target::All,
        [false, false, false, true] => Target::Names(args.name),
        [false, false, false, false] => {
            bail!("say what to record: `-- CMD ARGS...`, `--pid PID`, `--name PATTERN` or `--all`")
        }
        _ => {
            bail!("record one thing at a time: `-- CMD`, `--pid PID`, `--name PATTERN` or `--all`")
        }
    };
    if args.listen.is_none() && args.export.any() {
        bail!("--top, --window and --analysis-every are for the exporter: add --listen ADDR");
    }
    let exporter = args
        .listen
        .as_ref()
        .map(|_| crate::serve::config(&args.export))
        .transpose()?;
    let options = RecordOptions {
        target,
        backend: backend_choice(args.backend),
        rss_events: args.rss_events,
        interval: args.interval,
        duration: args.duration,
        sites,
    };
    // A report that cannot be written is said now, not after an hour of recording.
    for spec in &args.report {
        spec.check_writable()?;
    }
    let store = Store::open(&args.store.store)?;
    if let Some(BaselineArg::Id(id)) = args.baseline {
        // Said now: a missing baseline must not cost a recording.
        store.session(id).context("--baseline")?;
    }
    let serving = match (&args.listen, exporter) {
        (Some(listen), Some(config)) => {
            let s = crate::serve::Serving::start(listen, &args.store.store, config, None)?;
            eprintln!("memtools: serving {}", s.url());
            Some(s)
        }
        _ => None,
    };
    let tty = std::io::stderr().is_terminal();
    // With --live the view takes the terminal from the first progress report on; the status
    // line shows only if the user closes the view before the recording ends.
    let live = match args.live {
        true => {
            let settings = view_settings(None, None);
            let command = matches!(options.target, Target::Command(_));
            let live = LiveRecording::record(&args.store.store, settings, command)?;
            Some(RefCell::new(live))
        }
        false => None,
    };
    let show = |p: &Progress| {
        if let Some(s) = &serving {
            s.progress(p);
        }
        if let Some(l) = &live
            && !l.borrow_mut().progress(p)
        {
            return;
        }
        if tty {
            eprint!(
                "\r\x1b[2Kmemtools: recording session {} · {} · {} · {} · {}",
                p.session_id,
                units::duration_ns(p.elapsed.as_nanos() as i64),
                units::processes(p.processes as u64),
                units::samples(p.samples),
                units::bytes(p.store_bytes)
            );
        }
    };
    // Said at once: into the live view, or over the status line.
    let notice = |line: &str| match &live {
        Some(l) => l.borrow_mut().notice(line),
        None => {
            if tty {
                eprint!("\r\x1b[2K");
            }
            eprintln!("memtools: {line}");
        }
    };
    let recorded = record::record(&store, &options, show, notice);
    if let Some(s) = serving {
        s.stop();
    }
    if let Some(l) = live {
        // A recording stopped early (Ctrl-C in the view, a signal) closes the view with it;
        // one that ended by itself stays on screen until the user leaves it.
        let stopped = !matches!(&recorded, Ok(o) if o.interrupted_by.is_none());
        l.into_inner().finish(stopped)?;
    }
    let outcome = match recorded {
        Ok(o) => o,
        Err(e @ RecordError::Spawn { .. }) => {
            eprintln!("memtools-user: {e}");
            // What a shell returns for a command it cannot run.
            return Ok(127);
        }
        Err(e) => return Err(e.into()),
    };
    if tty {
        eprint!("\r\x1b[2K");
    }
    let mut err = std::io::stderr().lock();
    writeln!(
        err,
        "memtools: session {} ({}): {}, {} in {} -> {}",
        outcome.session_id,
        outcome.backend,
        units::processes(outcome.processes as u64),
        units::samples(outcome.samples),
        units::duration_ns(outcome.duration.as_nanos() as i64),
        store.path().display()
    )?;
    for p in &outcome.top {
        writeln!(
            err,
            "  {:>10}  peak  {} (pid {})",
            units::bytes(p.peak),
            p.name,
            p.pid
        )?;
    }
    if outcome.unreadable > 0 {
        writeln!(
            err,
            "  {} could not be read (permissions); run as root to see them",
            units::processes(outcome.unreadable)
        )?;
    }
    if let Some(lost) = memtools::report::text::lost_text(outcome.lost) {
        writeln!(err, "  incomplete: {lost}")?;
    }
    if !outcome.ignored_phase_lines.is_empty() {
        writeln!(
            err,
            "  ignored phase lines written to ${}: {}",
            record::phases::PHASES_ENV,
            outcome.ignored_phase_lines.join(", ")
        )?;
    }
    if let Some(sig) = outcome.interrupted_by {
        writeln!(err, "  stopped by signal {sig}")?;
    }
    if let Some(cut) = &outcome.cut_short {
        match &cut.unmarked {
            None => writeln!(
                err,
                "  cut short: {}; the session is marked so and keeps what came before",
                cut.reason
            )?,
            Some(why) => writeln!(
                err,
                "  cut short: {}; the session could not be marked so ({why}) and shows as unfinished",
                cut.reason
            )?,
        }
    }
    if !outcome.survivors.is_empty() {
        writeln!(
            err,
            "  SIGKILL did not end {} of the tree (stuck in the kernel): pids {}",
            units::processes(outcome.survivors.len() as u64),
            outcome
                .survivors
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    if let Some(problem) = &outcome.cleanup_problem {
        writeln!(err, "  {problem}")?;
    }
    let status = match (outcome.exit, outcome.interrupted_by) {
        (Some(exit), _) => exit.shell_code(),
        (None, Some(sig)) if matches!(options.target, Target::Command(_)) => 128 + sig,
        _ => 0,
    };
    drop(err);
    if !args.fail_on_leak
        && args.fail_on_peak.is_empty()
        && args.report.is_empty()
        && args.baseline.is_none()
    {
        return Ok(status);
    }
    // The recording is stored whatever happens below: an analysis or report failure is said,
    // and the session stays for `detect` and the GUI.
    let params = Params::default();
    let this_machine = limits::machine_memory().unwrap_or(16 << 30);
    let mut report = detect::analyse(
        &store,
        outcome.session_id,
        args.metric,
        &params,
        None,
        this_machine,
    )
    .with_context(|| format!("analysing session {} (it is stored)", outcome.session_id))?;
    report.set_budgets(args.fail_on_peak);
    let baseline = match args.baseline {
        None => None,
        Some(BaselineArg::Id(id)) => Some(id),
        Some(BaselineArg::LatestPassing) => {
            let found = store.latest_passing(report.session.what(), outcome.session_id)?;
            if found.is_none() {
                eprintln!(
                    "memtools: no earlier passing run of this command to compare with; this one can be the baseline of the next"
                );
            }
            found
        }
    };
    if let Some(id) = baseline {
        let choice = match args.metric {
            MetricChoice::All => MetricChoice::All,
            MetricChoice::One(_) => MetricChoice::One(Some(report.metric)),
        };
        let before = detect::analyse(&store, id, choice, &params, None, this_machine)
            .with_context(|| format!("analysing the baseline session {id}"))?;
        report.baseline = Some(baseline::compare(&report, &before));
    }
    eprint!("{}", verdicts::text(&report, tty));
    let mut failed = false;
    for spec in &args.report {
        match spec.write(&report) {
            Ok(()) => eprintln!("memtools: wrote {spec}"),
            Err(e) => {
                eprintln!(
                    "memtools-user: {e} (session {} is stored)",
                    outcome.session_id
                );
                failed = true;
            }
        }
    }
    let regressed = report
        .baseline
        .as_ref()
        .is_some_and(|b| !b.regressions.is_empty());
    let over_budget = report.over_budget().next().is_some();
    Ok(match status {
        0 if args.fail_on_leak && (report.has_leak() || regressed) => 3,
        0 if over_budget => 3,
        0 if failed => 1,
        s => s,
    })
}

/// What the live view follows and judges with: `detect`'s default parameters and limits.
fn view_settings(
    session: Option<memtools::store::SessionSelector>,
    metric: Option<memtools::model::Metric>,
) -> memtools_tui::Settings {
    let params = Params::default();
    let this_machine = limits::machine_memory().unwrap_or(16 << 30);
    memtools_tui::Settings {
        selector: session.unwrap_or(memtools::store::SessionSelector::Latest),
        metric,
        params,
        this_machine,
        refresh: std::time::Duration::from_secs(1),
    }
}

/// `top`: the live view of a store's session, or of every process recorded into a temporary
/// store for as long as the view is up.
fn top(args: TopArgs) -> Result<i32> {
    let mut settings = view_settings(Some(args.session), args.metric);
    settings.refresh = args.refresh;
    if let Some(path) = &args.store {
        let controls = memtools_tui::Controls {
            catch_signals: true,
            ..Default::default()
        };
        memtools_tui::run(path, settings, controls)?;
        return Ok(0);
    }
    if args.session != memtools::store::SessionSelector::Latest {
        bail!("--session picks a session of --store; without --store, top records a new one");
    }
    // Private to us (mode 0700, a fresh random name), removed when we return.
    let dir = tempfile::Builder::new()
        .prefix("memtools-top-")
        .tempdir()
        .context("creating a temporary store")?;
    let store = Store::open(dir.path().join("top.db"))?;
    let options = RecordOptions {
        target: Target::All,
        backend: backend_choice(args.backend),
        rss_events: false,
        interval: args.interval,
        duration: None,
        sites: None,
    };
    // Ctrl-C in the view closes it, as q does; either then stops the recording.
    let live = RefCell::new(LiveRecording::top(store.path(), settings)?);
    let mut stopping = false;
    let progress = |p: &Progress| {
        if live.borrow_mut().progress(p) && !stopping {
            stopping = true;
            // The recorder catches it and finishes the session: the view has closed.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGINT);
        }
    };
    let notice = |line: &str| live.borrow_mut().notice(line);
    let recorded = record::record(&store, &options, progress, notice);
    live.into_inner().finish(true)?;
    recorded?;
    drop(store);
    dir.close().context("removing the temporary store")?;
    Ok(0)
}

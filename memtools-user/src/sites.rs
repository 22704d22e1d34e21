//! `memtools-user sites`: where each process of a session grew, from the growth sites
//! `record --sites` stored, within the leak's window, the whole session or a given range:
//! resident growth from sampled page faults, and address space reserved by brk/mmap calls,
//! each measured apart (`--cause`).

use std::io::Write;

use anyhow::{Result, bail};

use crate::cli::{SiteWindowArg, SitesArgs, SitesFormat};
use memtools::analysis::{Params, Verdict};
use memtools::detect;
use memtools::report::output;
use memtools::sites::{self, Frame, Measure, ProcessSites, Site, Window};
use memtools::store::{ProcessRow, Store};

/// How many sites a process lists in text and JSON.
const TOP: usize = 10;

pub fn run(args: SitesArgs) -> Result<i32> {
    let store = Store::open_read_only(&args.store.store)?;
    let id = store.resolve(args.session.session)?;
    let session = store.session(id)?;
    if !store.has_sites(id)? {
        bail!(
            "session {id} has no growth sites: they are recorded with the eBPF backend, by default for a command or --pid (`memtools-user record --sites` requires them, and asks for them with --all or --name)"
        );
    }
    let processes: Vec<ProcessRow> = store
        .processes(id)?
        .into_iter()
        .filter(|p| args.pid.is_none_or(|pid| p.info.key.pid == pid))
        .collect();
    if processes.is_empty() {
        bail!(
            "session {id} has no process with pid {}",
            args.pid.unwrap_or_default()
        );
    }
    // Each process's window: the leak's for a leaking one (others are left out), else the
    // same for all.
    let windows: Vec<(ProcessRow, Window)> = match args.window {
        SiteWindowArg::All => processes.into_iter().map(|p| (p, Window::ALL)).collect(),
        SiteWindowArg::Range(a, b) => processes
            .into_iter()
            .map(|p| {
                let w = Window {
                    start: a.map(|a| session.start.saturating_add(a)),
                    end: b.map(|b| session.start.saturating_add(b)),
                };
                (p, w)
            })
            .collect(),
        SiteWindowArg::Leak => {
            let this_machine = memtools::limits::machine_memory().unwrap_or(16 << 30);
            let report =
                detect::analyse_session(&store, id, None, &Params::default(), None, this_machine)?;
            let leaks: Vec<(ProcessRow, Window)> = report
                .processes
                .into_iter()
                .filter(|r| r.analysis.verdict == Verdict::Leak)
                .filter_map(|r| {
                    let e = r.analysis.evidence?;
                    let w = Window {
                        start: Some(e.window_start),
                        end: Some(e.window_end),
                    };
                    processes
                        .iter()
                        .any(|p| p.id == r.process.id)
                        .then_some((r.process, w))
                })
                .collect();
            if leaks.is_empty() {
                bail!(
                    "no process{} leaks in session {id}: give `--window all` to see where it grew anyway",
                    args.pid
                        .map(|p| format!(" with pid {p}"))
                        .unwrap_or_default()
                );
            }
            leaks
        }
    };
    let causes = args.cause.causes();
    let mut shown: Vec<Measure> = causes.iter().map(|c| c.measure()).collect();
    shown.dedup();
    let mut per_process: Vec<(ProcessRow, Vec<Site>)> = Vec::with_capacity(windows.len());
    for (p, w) in windows {
        let found = store.sites(p.id, w, causes)?;
        per_process.push((p, found));
    }
    let unnamed = per_process
        .iter()
        .flat_map(|(_, s)| s.iter().take(TOP))
        .flat_map(|s| &s.stack)
        .any(|f| f.function.is_none() && f.build_id.is_some() && f.file_offset.is_some());
    if unnamed {
        eprintln!(
            "memtools: some frames have no name (a stripped binary?): `memtools-user resymbolize --search DIR` names them from the build with symbols"
        );
    }
    let bytes = render(args.format, &shown, &per_process)?;
    match &args.output {
        Some(path) => output::write(path, &bytes)?,
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&bytes).and_then(|()| out.flush()) {
                Ok(()) => {}
                // A reader that stopped early (`| head`) is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(0)
}

/// The process a stack belongs to, as an outermost frame: one folded file or flame graph for
/// several processes keeps them apart. With both measures shown, the measure is the next
/// frame in, so resident and reserved bytes are two towers, never one sum.
fn under_process(p: &ProcessRow, sites: &[Site], shown: &[Measure]) -> Vec<Site> {
    let named = |label: String| Frame {
        function: Some(label),
        ..Frame::default()
    };
    let root = named(format!("{} (pid {})", p.info.name, p.info.key.pid));
    sites
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if shown.len() > 1 {
                s.stack
                    .push(named(s.cause.measure().frame_label().to_string()));
            }
            s.stack.push(root.clone());
            s
        })
        .collect()
}

fn render(
    format: SitesFormat,
    shown: &[Measure],
    per_process: &[(ProcessRow, Vec<Site>)],
) -> Result<Vec<u8>> {
    Ok(match format {
        SitesFormat::Text => per_process
            .iter()
            .map(|(p, s)| sites::text(p.info.key.pid, &p.info.name, s, shown, TOP))
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
        SitesFormat::Json => {
            let list: Vec<ProcessSites> = per_process
                .iter()
                .map(|(p, s)| ProcessSites::of(p.info.key.pid, &p.info.name, s, shown, TOP))
                .collect();
            let mut v = serde_json::to_vec_pretty(&list)?;
            v.push(b'\n');
            v
        }
        SitesFormat::Folded => per_process
            .iter()
            .map(|(p, s)| sites::folded(&under_process(p, s, shown)))
            .collect::<String>()
            .into_bytes(),
        SitesFormat::Svg => {
            let all: Vec<Site> = per_process
                .iter()
                .flat_map(|(p, s)| under_process(p, s, shown))
                .collect();
            let title = if shown.len() > 1 {
                "Where it grows: resident memory (page faults) and reserved address space (brk/mmap calls), side by side, not to be added"
            } else if shown.first() == Some(&Measure::Reserved) {
                "Where it reserved address space (brk/mmap calls)"
            } else {
                "Where it grows"
            };
            sites::flame_graph(title, &all)?
        }
    })
}

//! `memtools-gui [--metric NAME] [STORE]`: the desktop viewer.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use memtools::model::Metric;
use memtools_gui::{App, Saved, default_store};

const USAGE: &str = "usage: memtools-gui [--metric NAME] [STORE]\n\n\
Opens a memtools store (default: $MEMTOOLS_STORE, else memtools.db) to browse its sessions,\n\
plot process histories and run the leak pipeline interactively. --metric opens the sessions\n\
on a metric other than memory: threads, fds, vm_size, rss_anon, ...";

fn main() {
    if let Err(e) = run() {
        eprintln!("memtools-gui: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut store = None;
    let mut metric: Option<Metric> = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            println!("{USAGE}");
            return Ok(());
        }
        let text = a.to_string_lossy();
        if let Some(name) = text.strip_prefix("--metric=") {
            metric = Some(name.parse()?);
        } else if a == "--metric" {
            let name = args
                .next()
                .ok_or_else(|| anyhow!("--metric needs a metric name\n\n{USAGE}"))?;
            metric = Some(name.to_string_lossy().parse()?);
        } else if store.is_none() && !text.starts_with('-') {
            store = Some(PathBuf::from(a));
        } else {
            return Err(anyhow!("unexpected argument `{text}`\n\n{USAGE}"));
        }
    }
    let store = store.unwrap_or_else(default_store);
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("memtools")
            .with_inner_size([1400.0, 860.0]),
        ..Default::default()
    };
    eframe::run_native(
        "memtools",
        options,
        Box::new(move |cc| {
            let saved: Saved = cc
                .storage
                .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                .unwrap_or_default();
            Ok(Box::new(App::new(store.clone(), saved).with_metric(metric)))
        }),
    )
    .map_err(|e| anyhow!("{e}"))
    .context("could not open a window (is there a display? try `xvfb-run memtools-gui`)")
}

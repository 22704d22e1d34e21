//! `memtools-gui [STORE]`: the desktop viewer.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use memtools_gui::{App, Saved, default_store};

const USAGE: &str = "usage: memtools-gui [STORE]\n\n\
Opens a memtools store (default: $MEMTOOLS_STORE, else memtools.db) to browse its sessions,\n\
plot process histories and run the leak pipeline interactively.";

fn main() {
    if let Err(e) = run() {
        eprintln!("memtools-gui: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let store = match args.next() {
        Some(a) if a == "-h" || a == "--help" => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(a) => PathBuf::from(a),
        None => default_store(),
    };
    if args.next().is_some() {
        return Err(anyhow!("too many arguments\n\n{USAGE}"));
    }
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
            Ok(Box::new(App::new(store.clone(), saved)))
        }),
    )
    .map_err(|e| anyhow!("{e}"))
    .context("could not open a window (is there a display? try `xvfb-run memtools-gui`)")
}

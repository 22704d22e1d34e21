//! memtools' desktop viewer: browse a store's sessions, plot process histories, and run the
//! analysis pipeline interactively with the same parameters and code as `memtools-user detect`.
//!
//! It reads stores through the core library, `memtools`, only: never `memtools-user` or aya, so
//! it builds with stable Rust wherever a store is copied to.
//!
//! [`App`] holds all state; [`App::show`] draws a frame into any `egui::Ui`, which is how the
//! window (eframe) and the headless tests (egui_kittest) both drive it.

pub mod app;
pub mod downsample;
pub mod flame;
pub mod frame_stats;
mod live;
pub mod loader;
pub mod overlays;
pub mod params_panel;
pub mod plot;
pub mod problem;
pub mod sessions;
pub mod sites;
pub mod sites_panel;
pub mod table;
mod ui;

pub use app::{App, Saved};

use std::path::PathBuf;

/// The store the app opens when none is given: as the CLI, `MEMTOOLS_STORE` or `memtools.db`.
pub fn default_store() -> PathBuf {
    std::env::var_os("MEMTOOLS_STORE")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || PathBuf::from(memtools::store::DEFAULT_STORE),
            PathBuf::from,
        )
}

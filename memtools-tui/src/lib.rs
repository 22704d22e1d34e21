//! memtools' live terminal view: a session's processes, their growth and their verdicts, as the
//! recording happens (or after), over SSH where the desktop viewer is not at hand.
//!
//! It reads stores through the core library, `memtools`, only: never `memtools-user` or aya
//! (the recorder embeds it, not the other way round), so it builds with stable Rust anywhere.
//!
//! Data flows one way: [`follow`] reads only what is new in the store, [`worker`] runs it and
//! `detect`'s pipeline on background threads and hands [`snapshot::Snapshot`]s over; the
//! drawing thread ([`app`]) turns keys into [`state::View`] changes and [`draw`]s frames,
//! on the terminal ([`terminal`]) or on ratatui's `TestBackend` in the tests.

pub mod app;
pub mod draw;
pub mod follow;
pub mod history;
pub mod order;
pub mod snapshot;
pub mod state;
pub mod terminal;
pub mod theme;
pub mod worker;

pub use app::{Controls, run};
pub use worker::Settings;

/// Why the view could not run.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error(
        "the live view needs a terminal, and this program has none (/dev/tty: {0}); use `show` or `detect` instead"
    )]
    NoTerminal(#[source] std::io::Error),
    #[error("the terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

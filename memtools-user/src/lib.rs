//! memtools-user: the recorder and the command line.
//!
//! The recorder (both backends, the recorded command and its signals, phases) writes samples
//! into the store of the core library, [`memtools`], which holds everything a front-end shares
//! (model, store, analysis, detect, reports) and must stay free of the kernel side; this crate
//! is the one that loads the eBPF programs.

pub mod cli;
pub mod commands;
pub mod live;
pub mod record;
pub mod resymbolize;
pub mod serve;
pub mod sites;
pub mod symbolize;

//! memtools: record per-process memory histories and tell leaks from growth.
//!
//! Data flows one way: a recorder backend produces samples, the [`store`] keeps them, the
//! [`analysis`] pipeline turns a process's history into a verdict, and a report shows it.

pub mod analysis;
pub mod baseline;
pub mod cli;
pub mod commands;
pub mod detect;
pub mod model;
pub mod record;
pub mod report;
pub mod store;
pub mod units;

//! memtools' core: what every front-end shares, from a stored session to a verdict and a report.
//!
//! The data model, the sample [`store`] (the only place that knows SQL), the leak [`analysis`]
//! (pure functions, one [`analysis::Params`]), [`detect`] over a stored session, the limits a
//! process could grow into, and the [`report`]s. It must not depend on the kernel side: no aya,
//! no build script, no nightly, so the viewer and `detect` build anywhere a store is copied to.

pub mod analysis;
pub mod baseline;
pub mod detect;
pub mod limits;
pub mod model;
pub mod report;
pub mod sites;
pub mod store;
pub mod units;

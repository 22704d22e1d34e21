//! The one parameter struct shared by the CLI, the GUI and the tests.

use serde::{Deserialize, Serialize};

/// One gibibyte, for limits and tests.
pub const GIB: u64 = 1 << 30;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// Which detectors decide the verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    /// Everything together: minimum growth of the lower envelope, then its robust trend or LBR,
    /// vetoed when change points explain the growth as a step or a warm-up. The default.
    #[default]
    Combined,
    /// Linear Backward Regression alone (memorytools' detector, with its bug fixed).
    Lbr,
    /// Theil-Sen slope with a Mann-Kendall test on the second half of the run, alone.
    Trend,
    /// Change-point segmentation alone: levels that keep stepping up through the second half.
    Cpd,
}

impl Algo {
    /// The name users type (`combined`, `lbr`, `trend`, `cpd`).
    pub fn name(self) -> &'static str {
        match self {
            Algo::Combined => "combined",
            Algo::Lbr => "lbr",
            Algo::Trend => "trend",
            Algo::Cpd => "cpd",
        }
    }

    /// Parses a name as [`Algo::name`] gives it.
    pub fn from_name(name: &str) -> Option<Algo> {
        [Algo::Combined, Algo::Lbr, Algo::Trend, Algo::Cpd]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// Every knob of the pipeline. `Default` gives the documented defaults; a GUI or a JSON file may
/// give only some fields (the others default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Params {
    /// Which detectors decide.
    pub algo: Algo,
    /// Consecutive samples further apart than this (seconds) start a new segment. `None` derives
    /// it from the series: `gap_factor` times its median interval, but never less than
    /// `gap_min_fraction` of the run, because bursty recorders pause between bursts.
    pub gap_threshold_s: Option<f64>,
    /// Multiple of the median sampling interval that counts as a gap (when derived).
    pub gap_factor: f64,
    /// Pauses shorter than this fraction of the run are never gaps (when derived).
    pub gap_min_fraction: f64,
    /// Step of the uniform grid (seconds). `None` uses each segment's median interval, coarsened
    /// so a segment never has more than `max_grid_points`.
    pub resample_step_s: Option<f64>,
    /// Upper bound on grid points per segment, so dense bursts cannot blow up the work.
    pub max_grid_points: usize,
    /// Smallest LBR window, in grid points; also the fewest samples that give a verdict at all.
    pub min_window: usize,
    /// R^2 an LBR window needs before its projection is trusted.
    pub r2_threshold: f64,
    /// LBR flags a line that reaches the limit within this many seconds of the window's end.
    pub critical_time_s: f64,
    /// The limit the metric can grow into (bytes): for resident memory the machine's memory or
    /// the cgroup limit, for virtual size the address-space limit (RLIMIT_AS). `None` where
    /// nothing bounds the metric: no time to limit is claimed then. The default is a
    /// placeholder; callers should use [`Params::with_limit`].
    pub limit_bytes: Option<u64>,
    /// Growth of the lower envelope over the second half below this many bytes is never a leak.
    pub min_growth_bytes: u64,
    /// ... nor below this fraction of the level at the middle of the run.
    pub min_growth_fraction: f64,
    /// The lower envelope is this quantile of each block (0 = the minimum): low enough that a
    /// sawtooth shows its floor and spikes vanish, high enough that noise does not decide.
    pub envelope_quantile: f64,
    /// One-sided significance level of the Mann-Kendall tests.
    pub alpha: f64,
    /// Smallest step (bytes) change-point segmentation pays for even on noise-free data: the
    /// penalty is max(2 sigma^2 ln n, step^2), in the data's own units.
    pub cpd_min_step_bytes: u64,
    /// A final regime longer than this fraction of the second half that grows less than the
    /// minimum growth is a plateau: the growth before it was a warm-up, not a leak.
    pub plateau_fraction: f64,
    /// Without phases, a life shorter than this (seconds) that grew is too short to tell a leak
    /// from loading: `insufficient`.
    pub min_life_s: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            algo: Algo::Combined,
            gap_threshold_s: None,
            gap_factor: 10.0,
            gap_min_fraction: 0.02,
            resample_step_s: None,
            max_grid_points: 10_000,
            min_window: 20,
            r2_threshold: 0.9,
            critical_time_s: 3600.0,
            limit_bytes: Some(16 * GIB),
            min_growth_bytes: 2 * MIB,
            min_growth_fraction: 0.02,
            envelope_quantile: 0.1,
            alpha: 0.01,
            cpd_min_step_bytes: MIB,
            plateau_fraction: 1.0 / 3.0,
            min_life_s: 30.0,
        }
    }
}

impl Params {
    /// The defaults with the memory limit the caller measured (machine memory or cgroup limit).
    pub fn with_limit(limit_bytes: u64) -> Self {
        Params {
            limit_bytes: Some(limit_bytes),
            ..Params::default()
        }
    }

    /// The minimum growth for a series whose level is `level` bytes.
    pub fn min_growth_at(&self, level: f64) -> f64 {
        let abs = self.min_growth_bytes as f64;
        let rel = self.min_growth_fraction * level.abs();
        if rel.is_finite() { abs.max(rel) } else { abs }
    }
}

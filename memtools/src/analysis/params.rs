//! The one parameter struct shared by the CLI, the GUI and the tests.

use serde::{Deserialize, Serialize};

pub use crate::model::Unit;

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

/// What counts as growth in one unit: the minimums a leak must pass and the resolution the
/// pipeline measures at, in that unit (a count is not bytes: one more thread is a step, one
/// more byte is noise).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Scale {
    /// Growth of the lower envelope over the second half (or across tests) below this amount
    /// is never a leak...
    pub min_growth: f64,
    /// ... nor below this fraction of the level where the growth began.
    pub min_growth_fraction: f64,
    /// Smallest step change-point segmentation pays for even on noise-free data (the penalty
    /// is max(2 sigma^2 ln n, step^2), in the data's own units), and the smallest step a
    /// staircase is counted in.
    pub min_step: f64,
    /// The smallest rise after one test that counts as the test keeping something.
    pub resolution: f64,
}

impl Scale {
    /// Memory: 2 MiB or 2 % of the level; steps from 1 MiB; a page kept after a test counts.
    pub const BYTES: Scale = Scale {
        min_growth: 2.0 * MIB as f64,
        min_growth_fraction: 0.02,
        min_step: MIB as f64,
        resolution: 4096.0,
    };
    /// Counts: 5 more, or 1 % of the level (a process holding 2,000 descriptors leaks when it
    /// keeps 20 more); a step of one is a step.
    pub const COUNTS: Scale = Scale {
        min_growth: 5.0,
        min_growth_fraction: 0.01,
        min_step: 1.0,
        resolution: 1.0,
    };
}

impl Default for Scale {
    fn default() -> Self {
        Scale::BYTES
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
    /// What the history counts: chooses which of [`Params::bytes`] and [`Params::counts`]
    /// applies, and how amounts are worded. `detect` sets it from the metric.
    pub unit: Unit,
    /// What counts as growth for memory.
    pub bytes: Scale,
    /// What counts as growth for threads and file descriptors.
    pub counts: Scale,
    /// The lower envelope is this quantile of each block (0 = the minimum): low enough that a
    /// sawtooth shows its floor and spikes vanish, high enough that noise does not decide.
    pub envelope_quantile: f64,
    /// One-sided significance level of the Mann-Kendall tests.
    pub alpha: f64,
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
            unit: Unit::Bytes,
            bytes: Scale::BYTES,
            counts: Scale::COUNTS,
            envelope_quantile: 0.1,
            alpha: 0.01,
            plateau_fraction: 1.0 / 3.0,
            min_life_s: 30.0,
        }
    }
}

/// A parameter outside the range where it means anything, with the range and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{name} {value} is out of range: {why}")]
pub struct ParamError {
    /// The parameter, as the command line names it where it has a flag.
    pub name: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl Params {
    /// The fewest points a regression window may have: through two points every line fits
    /// exactly, so R^2 would say nothing.
    pub const MIN_WINDOW: usize = 3;
    /// The most a `min_window` may ask for: more samples than any history holds.
    pub const MAX_MIN_WINDOW: usize = 10_000_000;

    /// Checks every field, so a bad value is refused with its range and why instead of being
    /// quietly clamped or turning a comparison into nonsense (NaN).
    pub fn validate(&self) -> Result<(), ParamError> {
        let fail = |name, value: String, why| Err(ParamError { name, value, why });
        let fraction = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !fraction(self.r2_threshold) {
            return fail(
                "--r2",
                self.r2_threshold.to_string(),
                "R^2 is the fraction of the variance a line explains, from 0 to 1",
            );
        }
        if self.min_window < Self::MIN_WINDOW || self.min_window > Self::MAX_MIN_WINDOW {
            return fail(
                "--min-window",
                self.min_window.to_string(),
                "a window needs at least 3 points (through 2 every line fits exactly), and no history has more than 10,000,000",
            );
        }
        if !positive(self.critical_time_s) {
            return fail(
                "--critical-time",
                format!("{} s", self.critical_time_s),
                "the time within which reaching the limit is flagged must be more than 0",
            );
        }
        if self.limit_bytes == Some(0) {
            return fail(
                "--limit",
                "0 B".to_string(),
                "a memory limit must be more than 0 bytes",
            );
        }
        if let Some(g) = self.gap_threshold_s.filter(|&g| !positive(g)) {
            return fail(
                "--gap",
                format!("{g} s"),
                "a gap is a pause longer than 0 between two samples",
            );
        }
        if let Some(s) = self.resample_step_s.filter(|&s| !positive(s)) {
            return fail(
                "resample_step_s",
                format!("{s} s"),
                "the resampling grid's step must be more than 0",
            );
        }
        if !(self.gap_factor.is_finite() && self.gap_factor >= 1.0) {
            return fail(
                "gap_factor",
                self.gap_factor.to_string(),
                "a gap is at least one median sampling interval (1 or more)",
            );
        }
        if !(fraction(self.gap_min_fraction) && self.gap_min_fraction < 1.0) {
            return fail(
                "gap_min_fraction",
                self.gap_min_fraction.to_string(),
                "a fraction of the run, from 0 up to (not including) 1",
            );
        }
        if self.max_grid_points < Self::MIN_WINDOW || self.max_grid_points > 10_000_000 {
            return fail(
                "max_grid_points",
                self.max_grid_points.to_string(),
                "from 3 (one window) to 10,000,000 (the memory one segment may take)",
            );
        }
        for (scale, name) in [(&self.bytes, "bytes"), (&self.counts, "counts")] {
            if !(scale.min_growth_fraction.is_finite() && scale.min_growth_fraction >= 0.0) {
                return fail(
                    if name == "bytes" {
                        "bytes.min_growth_fraction"
                    } else {
                        "counts.min_growth_fraction"
                    },
                    scale.min_growth_fraction.to_string(),
                    "a fraction of the level, 0 or more",
                );
            }
            let amounts = [scale.min_growth, scale.min_step, scale.resolution];
            if amounts.iter().any(|a| !(a.is_finite() && *a >= 0.0)) {
                return fail(
                    if name == "bytes" {
                        "bytes.min_growth"
                    } else {
                        "counts.min_growth"
                    },
                    format!("{amounts:?}"),
                    "a minimum growth, step or resolution is an amount, 0 or more",
                );
            }
        }
        if !fraction(self.envelope_quantile) {
            return fail(
                "envelope_quantile",
                self.envelope_quantile.to_string(),
                "a quantile, from 0 to 1",
            );
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 0.5) {
            return fail(
                "alpha",
                self.alpha.to_string(),
                "a one-sided significance level, above 0 and at most 0.5",
            );
        }
        if !fraction(self.plateau_fraction) {
            return fail(
                "plateau_fraction",
                self.plateau_fraction.to_string(),
                "a fraction of the second half, from 0 to 1",
            );
        }
        Ok(())
    }

    /// The smallest window the pipeline really uses.
    pub fn effective_min_window(&self) -> usize {
        self.min_window.max(Self::MIN_WINDOW)
    }

    /// The defaults with the memory limit the caller measured (machine memory or cgroup limit).
    pub fn with_limit(limit_bytes: u64) -> Self {
        Params {
            limit_bytes: Some(limit_bytes),
            ..Params::default()
        }
    }

    /// The same parameters for a history of `unit`.
    pub fn for_unit(&self, unit: Unit) -> Params {
        Params {
            unit,
            ..self.clone()
        }
    }

    /// What counts as growth in the history's unit.
    pub fn scale(&self) -> &Scale {
        match self.unit {
            Unit::Bytes => &self.bytes,
            Unit::Count => &self.counts,
        }
    }

    /// The minimum growth for a series whose level is `level` (in its unit).
    pub fn min_growth_at(&self, level: f64) -> f64 {
        let s = self.scale();
        let rel = s.min_growth_fraction * level.abs();
        if rel.is_finite() {
            s.min_growth.max(rel)
        } else {
            s.min_growth
        }
    }

    /// The smallest step change points pay for, in the history's unit.
    pub fn min_step(&self) -> f64 {
        self.scale().min_step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_nonsense_is_refused_with_its_range() {
        assert_eq!(Params::default().validate(), Ok(()));
        for (p, name) in [
            (
                Params {
                    r2_threshold: 2.0,
                    ..Params::default()
                },
                "--r2",
            ),
            (
                Params {
                    r2_threshold: f64::NAN,
                    ..Params::default()
                },
                "--r2",
            ),
            (
                Params {
                    r2_threshold: -1.0,
                    ..Params::default()
                },
                "--r2",
            ),
            (
                Params {
                    min_window: 0,
                    ..Params::default()
                },
                "--min-window",
            ),
            (
                Params {
                    critical_time_s: 0.0,
                    ..Params::default()
                },
                "--critical-time",
            ),
            (
                Params {
                    gap_threshold_s: Some(f64::INFINITY),
                    ..Params::default()
                },
                "--gap",
            ),
            (
                Params {
                    limit_bytes: Some(0),
                    ..Params::default()
                },
                "--limit",
            ),
            (
                Params {
                    alpha: 0.0,
                    ..Params::default()
                },
                "alpha",
            ),
        ] {
            let err = p.validate().unwrap_err();
            assert_eq!(err.name, name);
            assert!(!err.why.is_empty());
        }
        assert_eq!(
            Params {
                min_window: 3,
                ..Params::default()
            }
            .validate(),
            Ok(())
        );
    }
}

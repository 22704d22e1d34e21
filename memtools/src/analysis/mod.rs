//! The leak analysis pipeline: pure functions from a history to a verdict, no I/O, no clock.
//!
//! [`analyze_in`] runs the stages on one process's history of one metric:
//! 1. [`gaps`]: clean (sort, merge duplicates, drop trailing zeros), leave out a teardown
//!    ([`life::teardown`]) and cut at gaps;
//! 2. [`resample`]: linear interpolation of each segment onto a uniform grid;
//! 3. [`lbr`]: Linear Backward Regression with O(1) windows;
//! 4. [`life`]: the whole life's floor, its change points, where its growth began, its steps;
//!    [`phased`]: the memory kept after each test, when the harness marked tests;
//!    [`trend`] and [`cpd`]: robust trend, lower envelope, change points over the second half
//!    (gathered in `facts`);
//! 5. [`verdict`]: `leak`, `ok` or `insufficient`, with the evidence and a reason in words.
//!
//! Times inside the pipeline are f64 seconds since the run's first sample ([`Overlay::origin`]);
//! results carry absolute [`TimeNs`] where a caller needs them.

pub mod cpd;
mod facts;
pub mod format;
pub mod gaps;
pub mod lbr;
pub mod life;
pub mod params;
pub mod phased;
pub mod resample;
pub mod trend;
pub mod verdict;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_counts;

use serde::{Deserialize, Serialize};

use crate::model::TimeNs;

pub use self::life::Steps;
pub use self::params::{Algo, GIB, MIB, Params, Scale, Unit};
pub use self::phased::PhaseSpan;
pub use self::verdict::{Detector, Evidence, LbrEvidence, TestsKept, Verdict, Votes};

use self::cpd::Cpd;
use self::lbr::Lbr;
use self::resample::{Grid, seconds};
use self::trend::{Blocks, Trend};

/// What is known of a history beyond its samples: whether it is the process's whole life, and
/// the tests (phases) it lived through.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The history begins at the process's start (it started while being recorded).
    pub from_start: bool,
    /// The history ends at the process's exit.
    pub exited: bool,
    /// The tests a harness marked, as (begin, end) times; any order.
    pub phases: Vec<PhaseSpan>,
}

/// The result for one process and metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub verdict: Verdict,
    /// One line a developer understands: the evidence for a leak, why not otherwise.
    pub reason: String,
    /// The numbers behind the verdict; `None` only when insufficient for lack of samples.
    pub evidence: Option<Evidence>,
    /// Samples analysed (after cleaning, teardown left out).
    pub samples: usize,
    /// Trailing 0-byte samples dropped (a process exiting).
    pub trailing_zeros: usize,
    /// Trailing samples of a teardown left out (a drop in the last moments of the life).
    pub teardown: usize,
    /// The highest sample, bytes (0 without samples).
    pub peak_bytes: f64,
    /// When it was.
    pub peak_at: Option<TimeNs>,
    /// What a plot overlays: segments, grids, LBR windows, trend and envelope. Large; skip it in
    /// summaries.
    pub overlay: Overlay,
}

/// The intermediate results, for plots and for anyone asking "why".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    /// Time of the first sample: every `*_s` time is seconds since it.
    pub origin: TimeNs,
    /// The gap threshold used, seconds (`None` below two samples).
    pub gap_threshold_s: Option<f64>,
    pub segments: Vec<Segment>,
    /// Start of the second half of the run, where the trend detectors look, seconds.
    pub half_s: f64,
    /// End of the run, seconds.
    pub end_s: f64,
    /// Theil-Sen / Mann-Kendall on block medians of the second half.
    pub trend: Option<Trend>,
    /// Theil-Sen / Mann-Kendall on a low quantile of each block (the lower envelope) of the second
    /// half.
    pub envelope: Option<Trend>,
    /// Change points of the second half's lower envelope.
    pub cpd: Option<Cpd>,
    /// The floor of the whole life and its change points.
    pub life_floor: Option<Blocks>,
    pub life_cpd: Option<Cpd>,
    /// Memory kept after each test, when phases decided.
    pub kept: Option<phased::Kept>,
    /// Each detector's own opinion.
    pub votes: Votes,
}

/// One gap-free stretch of the history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub start: TimeNs,
    pub end: TimeNs,
    /// Raw samples in it.
    pub samples: usize,
    /// The uniform grid it was resampled onto.
    pub grid: Grid,
    /// LBR over the grid (`None` below `min_window` points).
    pub lbr: Option<Lbr>,
}

/// The part of an [`Analysis`] a report prints: no overlay, so a JSON line per process stays
/// small.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub verdict: Verdict,
    pub reason: String,
    pub evidence: Option<Evidence>,
    pub samples: usize,
    pub trailing_zeros: usize,
    pub peak_bytes: f64,
}

impl Analysis {
    /// The verdict, reason and evidence without the overlay.
    pub fn summary(&self) -> Summary {
        Summary {
            verdict: self.verdict,
            reason: self.reason.clone(),
            evidence: self.evidence,
            samples: self.samples,
            trailing_zeros: self.trailing_zeros,
            peak_bytes: self.peak_bytes,
        }
    }
}

/// [`analyze_in`] knowing nothing beyond the samples: a history whose start and end are not
/// known to be the process's, without phases (an import, a process already running).
pub fn analyze(times: &[TimeNs], values: &[f64], params: &Params) -> Analysis {
    analyze_in(times, values, &Context::default(), params)
}

/// Analyses one history (times in ns since the epoch, values in bytes) with what is known of it.
/// Any input is accepted: unsorted, duplicated, empty, NaN; the result says `insufficient` when
/// it cannot tell. Single-threaded and O(n) apart from sorting unsorted input; callers
/// parallelise across processes.
pub fn analyze_in(times: &[TimeNs], values: &[f64], ctx: &Context, params: &Params) -> Analysis {
    let mut c = gaps::clean(times, values);
    let td = life::teardown(&c.t, &c.y, params);
    c.t.truncate(c.t.len() - td);
    c.y.truncate(c.y.len() - td);
    let n = c.t.len();
    let zeros = c.trailing_zeros;
    let (peak_i, peak) =
        c.y.iter()
            .enumerate()
            .fold((None, 0.0), |(bi, b), (i, &v)| {
                if bi.is_none() || v > b {
                    (Some(i), v)
                } else {
                    (bi, b)
                }
            });
    let mut a = Analysis {
        verdict: Verdict::Insufficient,
        reason: String::new(),
        evidence: None,
        samples: n,
        trailing_zeros: zeros,
        teardown: td,
        peak_bytes: peak,
        peak_at: peak_i.map(|i| c.t[i]),
        overlay: Overlay::default(),
    };
    if n == 0 {
        a.reason = if zeros > 0 {
            "no samples before the process exited".to_string()
        } else {
            "no samples".to_string()
        };
        return a;
    }
    let origin = c.t[0];
    a.overlay.origin = origin;
    let min_window = params.min_window.max(3);
    if n < min_window {
        let noun = if n == 1 { "sample" } else { "samples" };
        let why = format!("only {n} {noun}; at least {min_window} are needed");
        facts::few_samples(&mut a, &c, ctx, params, why);
        return a;
    }
    let end_s = seconds(c.t[n - 1].saturating_sub(origin));
    let threshold = gaps::gap_threshold_ns(&c.t, params);
    a.overlay.gap_threshold_s = threshold.map(seconds);
    for range in gaps::split(&c.t, threshold) {
        let (t, y) = (&c.t[range.clone()], &c.y[range]);
        let grid = resample::resample(t, y, origin, resample::grid_step_s(t, params));
        let lbr = lbr::lbr(&grid, params);
        a.overlay.segments.push(Segment {
            start: t[0],
            end: t[t.len() - 1],
            samples: t.len(),
            grid,
            lbr,
        });
    }
    facts::decide(&mut a, &c, ctx, end_s, params);
    a
}

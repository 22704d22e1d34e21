//! Stage 5: one verdict per process and metric, with its evidence.
//!
//! The rules, in order:
//! 1. Too little data is `insufficient`, never silently `ok`.
//! 2. A leak needs the lower envelope (the 10th percentile of each block) to grow through the second half of the run
//!    by at least the minimum growth, measured robustly (Theil-Sen) and up to the last block (so
//!    memory released at the end is not a leak).
//! 3. ... and a detector to vouch for it: LBR (fast growth towards the limit), or a significant
//!    Mann-Kendall rise of the envelope or of the block medians.
//! 4. ... and change points must not explain it away: a long final plateau (a warm-up or a ramp
//!    that stopped) or a single step carrying the growth is `ok`.

use serde::{Deserialize, Serialize};

use crate::model::TimeNs;

use super::cpd::Cpd;
use super::params::{Algo, Params};
use super::trend::Trend;

/// The verdict for one process and metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Leak,
    Ok,
    /// Too little data to tell; the reason says why.
    Insufficient,
}

impl Verdict {
    /// `leak`, `ok` or `insufficient`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::Ok => "ok",
            Verdict::Insufficient => "insufficient",
        }
    }
}

/// Which detector the evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    /// Linear Backward Regression: a well-fitting line reaching the limit soon.
    Lbr,
    /// Theil-Sen / Mann-Kendall on block medians of the second half.
    Trend,
    /// Theil-Sen / Mann-Kendall on a low quantile of each block (the lower envelope) of the
    /// second half.
    Envelope,
    /// Change-point levels stepping up through the second half.
    Cpd,
}

/// What supports (or, for `ok`, was checked against) the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub detector: Detector,
    /// Bytes per second.
    pub slope_bytes_per_s: f64,
    /// R^2 of the least-squares line over the window.
    pub r2: f64,
    pub window_start: TimeNs,
    pub window_end: TimeNs,
    /// Growth over the window, bytes.
    pub growth_bytes: f64,
    /// Seconds from the window's end until the line reaches the limit; `None` if never.
    pub time_to_limit_s: Option<f64>,
    pub limit_bytes: u64,
    /// Seconds between the window's end and the last sample (0 when the window ends the run).
    pub before_end_s: f64,
}

/// Each detector's own opinion, shown whatever the algorithm (the GUI lists them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Votes {
    pub lbr: bool,
    pub trend: bool,
    pub envelope: bool,
    pub cpd: bool,
}

/// What the stages found, in the run's time frame (seconds since its first sample).
#[derive(Clone, Debug)]
pub(super) struct Facts<'a> {
    pub params: &'a Params,
    pub mid_s: f64,
    pub end_s: f64,
    /// The second half's lower envelope, block medians and change points.
    pub envelope: &'a Trend,
    pub trend: Option<&'a Trend>,
    pub cpd: &'a Cpd,
    /// LBR flagged window with enough growth, and its evidence.
    pub lbr: Option<Evidence>,
    /// Envelope growth: min(Theil-Sen over the half, last block - first level).
    pub env_growth: f64,
    /// Theil-Sen envelope growth over the half alone (before the end check).
    pub env_ts_growth: f64,
    /// Minimum growth at this level.
    pub min_growth: f64,
    /// Evidence from the envelope (slope, the half's R^2, projected time to limit).
    pub env_evidence: Evidence,
    pub trend_evidence: Option<Evidence>,
}

/// A regime is flat when its own Theil-Sen slope is below this fraction of the second half's:
/// the rise stopped there. Comparing slopes, not growths against the minimum, keeps a steady but
/// noisy leak (which PELT cuts into a few levels, each growing a little) from looking flat.
const FLAT_SLOPE_FRACTION: f64 = 0.25;

/// The Theil-Sen slope of the envelope points of one regime (`None` below three points).
fn regime_slope(f: &Facts, r: &super::cpd::Regime) -> Option<f64> {
    let b = &f.envelope.blocks;
    if r.to - r.from < 3 {
        return None;
    }
    super::trend::theil_sen(&b.t[r.from..r.to], &b.y[r.from..r.to]).map(|(m, _)| m)
}

fn is_flat(f: &Facts, r: &super::cpd::Regime) -> bool {
    regime_slope(f, r).is_none_or(|m| m < FLAT_SLOPE_FRACTION * f.envelope.slope.max(0.0))
}

/// Why change points explain the growth away, if they do: a long flat final regime (a warm-up or
/// a ramp that stopped), or one step carrying the growth between flat regimes.
fn veto(f: &Facts) -> Option<String> {
    let half = f.end_s - f.mid_s;
    let regimes = &f.cpd.regimes;
    if regimes.len() < 2 {
        return None;
    }
    let last = regimes.last()?;
    if last.duration_s() >= f.params.plateau_fraction * half && is_flat(f, last) {
        let inner = regime_slope(f, last).map_or(0.0, |m| m * last.duration_s());
        if inner < f.min_growth {
            return Some(format!(
                "flat for the last {} after growing {} (a warm-up or a ramp that stopped)",
                super::format::duration(last.duration_s()),
                super::format::bytes(f.env_ts_growth.max(0.0)),
            ));
        }
    }
    let step = f.cpd.largest_step_up();
    if step > 0.0 && f.env_growth - step < f.min_growth && regimes.iter().all(|r| is_flat(f, r)) {
        return Some(format!(
            "its growth is one step of {}, not a steady rise",
            super::format::bytes(step)
        ));
    }
    None
}

/// Applies the rules of the module's documentation for `params.algo`. Returns the verdict, the
/// human reason and the evidence, and each detector's vote.
pub(super) fn decide(f: &Facts) -> (Verdict, String, Evidence, Votes) {
    let alpha = f.params.alpha;
    let grows = f.env_growth >= f.min_growth;
    let vetoed = veto(f);
    let env_rising = f.envelope.rising(alpha) && grows;
    let trend_rising = f
        .trend
        .is_some_and(|t| t.rising(alpha) && t.growth() >= f.min_growth);
    let regimes = &f.cpd.regimes;
    let cpd_rising = regimes.len() >= 2
        && f.cpd.steps_up() >= 2
        && regimes[regimes.len() - 1].level > regimes[regimes.len() - 2].level
        && grows
        && vetoed.is_none();
    let votes = Votes {
        lbr: f.lbr.is_some(),
        trend: trend_rising,
        envelope: env_rising,
        cpd: cpd_rising,
    };
    let growth_text = super::format::bytes(f.env_growth);
    let min_text = super::format::bytes(f.min_growth);
    let not_enough = || {
        if f.env_ts_growth >= f.min_growth {
            format!(
                "released at the end: the lower envelope rose {} but ends {growth_text} above \
                 where the second half started (minimum {min_text})",
                super::format::bytes(f.env_ts_growth),
            )
        } else if f.env_growth > 0.0 {
            format!(
                "the lower envelope grew only {growth_text} over the second half, less than the \
                 minimum growth of {min_text}"
            )
        } else {
            format!(
                "no growth: the lower envelope changed by {growth_text} over the second half \
                 (a leak needs {min_text})"
            )
        }
    };
    let leak = |e: Evidence| {
        let text = super::format::describe(&e);
        (Verdict::Leak, text, e, votes)
    };
    let ok = |why: String, e: Evidence| (Verdict::Ok, why, e, votes);
    match f.params.algo {
        Algo::Lbr => match f.lbr {
            Some(e) => leak(e),
            None => ok(
                "no LBR window fits well enough and reaches the limit within the critical time"
                    .into(),
                f.env_evidence,
            ),
        },
        Algo::Trend => match (trend_rising, f.trend_evidence) {
            (true, Some(e)) => leak(e),
            _ => ok(
                "no significant rising trend in the second half".into(),
                f.trend_evidence.unwrap_or(f.env_evidence),
            ),
        },
        Algo::Cpd => {
            if cpd_rising {
                leak(Evidence {
                    detector: Detector::Cpd,
                    ..f.env_evidence
                })
            } else if let Some(why) = vetoed {
                ok(why, f.env_evidence)
            } else if !grows {
                ok(not_enough(), f.env_evidence)
            } else {
                ok(
                    "change points show no level stepping up through the second half".into(),
                    f.env_evidence,
                )
            }
        }
        Algo::Combined => {
            if !grows {
                return ok(not_enough(), f.env_evidence);
            }
            if let Some(why) = vetoed {
                return ok(why, f.env_evidence);
            }
            // LBR's window tells the most when it ends the run; an earlier segment's window is
            // a worse summary than the envelope of the whole second half.
            match f.lbr {
                Some(e) if e.before_end_s <= 0.0 || !env_rising => return leak(e),
                _ if env_rising => return leak(f.env_evidence),
                _ => {}
            }
            if trend_rising && let Some(e) = f.trend_evidence {
                return leak(Evidence {
                    growth_bytes: f.env_growth.min(e.growth_bytes),
                    ..e
                });
            }
            ok(
                format!(
                    "the lower envelope grew {growth_text}, but not significantly \
                     (Mann-Kendall p = {:.3})",
                    f.envelope.mk.p_increase
                ),
                f.env_evidence,
            )
        }
    }
}

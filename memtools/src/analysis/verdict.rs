//! Stage 5: one verdict per process and metric, with its evidence.
//!
//! A leak is memory a process keeps taking while it repeats its work and does not give back.
//! Start-up (imports, loading, caches filling to their size) and a working set built once are
//! not leaks, however fast they grow. The questions, in order:
//! 1. Is there enough to judge? Too few samples is `insufficient`, never silently `ok`.
//! 2. With phases (tests), [`super::phased`] decides: memory kept after test after test.
//! 3. Without them, the shape of the whole life decides. Retained growth: the lower envelope
//!    (the 10th percentile of each block, so a garbage collector's sawtooth is judged by its
//!    floor) grew through the second half of the life by the minimum growth, up to its end (so
//!    memory given back is not a leak; a drop in the last moments is a teardown, left out).
//! 4. A process seen from its start to its exit whose growth shows no repeated steps is one
//!    piece of work: its peak is reported, never a leak.
//! 5. A life too short to show anything past its start-up is `insufficient`.
//! 6. Change points of the whole life's floor must not explain the growth as start-up or a
//!    working set built once: a long flat end (a warm-up, a cache that filled, a ramp that
//!    stopped) or one step carrying the growth is `ok`.
//! 7. A detector must vouch for a steady rise: LBR (fast growth towards the limit), or a
//!    significant Mann-Kendall rise of the envelope or of the block medians.

use serde::{Deserialize, Serialize};

use crate::model::TimeNs;

use super::cpd::{Cpd, Regime};
use super::format;
use super::life::Steps;
use super::params::{Algo, Params, Unit};
use super::phased::{self, Judgement, Kept};
use super::trend::{Blocks, Trend};

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

/// What decided.
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
    /// Memory kept after each test, across the tests (phases).
    Phases,
}

/// Memory kept across tests: how many were judged after start-up, and how much each kept.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestsKept {
    pub count: u32,
    pub per_test_bytes: f64,
}

/// The Linear Backward Regression window that qualified (or the best rising one), kept for the
/// JSON report and the viewer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LbrEvidence {
    pub flagged: bool,
    pub start: TimeNs,
    pub end: TimeNs,
    pub slope_bytes_per_s: f64,
    pub r2: f64,
    pub growth_bytes: f64,
    pub time_to_limit_s: Option<f64>,
}

/// The growth a verdict is about: for a leak, the whole of it, from where it began after
/// start-up (or after the first test) to the end of the life; for `ok`, what was checked.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub detector: Detector,
    /// The growth's average rate, bytes per second.
    pub slope_bytes_per_s: f64,
    /// R^2 of the least-squares line over the growth.
    pub r2: f64,
    /// Where the growth began and where the life (before any teardown) ended.
    pub window_start: TimeNs,
    pub window_end: TimeNs,
    /// `to_bytes - from_bytes`.
    pub growth_bytes: f64,
    /// The floor where the growth began, and where it ended.
    pub from_bytes: f64,
    pub to_bytes: f64,
    /// The equal steps it grew in, when it did.
    pub steps: Option<Steps>,
    /// With phases: the memory kept per test.
    pub tests: Option<TestsKept>,
    /// Seconds from the end until the growth at its rate reaches the limit; `None` when it
    /// never does, or when there is no limit that means something for the metric.
    pub time_to_limit_s: Option<f64>,
    pub limit_bytes: Option<u64>,
    /// The LBR window, whatever decided.
    pub lbr: Option<LbrEvidence>,
    /// What the amounts count: bytes, or threads or descriptors (the `_bytes` names hold a
    /// count then).
    #[serde(default)]
    pub unit: Unit,
}

/// Each detector's own opinion, shown whatever the algorithm (the GUI lists them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Votes {
    pub lbr: bool,
    pub trend: bool,
    pub envelope: bool,
    pub cpd: bool,
    pub phases: bool,
}

/// What is known of the whole life.
#[derive(Clone, Debug)]
pub(super) struct LifeFacts<'a> {
    /// Seconds, first to last sample (teardown left out).
    pub span_s: f64,
    /// The floor of the whole life.
    pub floor: &'a Blocks,
    /// The whole growth, ready for a leak's evidence.
    pub growth: Evidence,
    /// The highest sample, and the first, bytes.
    pub peak: f64,
    pub first: f64,
    /// Seen from its start to its exit.
    pub whole: bool,
}

/// What the stages found, in the run's time frame (seconds since its first sample).
#[derive(Clone, Debug)]
pub(super) struct Facts<'a> {
    pub params: &'a Params,
    pub mid_s: f64,
    pub end_s: f64,
    /// The second half's lower envelope and block medians.
    pub envelope: &'a Trend,
    pub trend: Option<&'a Trend>,
    /// Change points of the second half's envelope (for `--algo cpd`).
    pub cpd: &'a Cpd,
    /// LBR flagged window with enough growth.
    pub lbr: Option<LbrEvidence>,
    /// Envelope growth: min(Theil-Sen over the half, last block - first level).
    pub env_growth: f64,
    /// Theil-Sen envelope growth over the half alone (before the end check).
    pub env_ts_growth: f64,
    /// Minimum growth at this level.
    pub min_growth: f64,
    /// Evidence in the second half's terms (slope of the envelope, growth over the half).
    pub half_evidence: Evidence,
    pub life: LifeFacts<'a>,
}

/// A regime is flat when its own Theil-Sen slope is below this fraction of the reference slope:
/// the rise stopped there. Comparing slopes, not growths against the minimum, keeps a steady but
/// noisy leak (which PELT cuts into a few levels, each growing a little) from looking flat.
const FLAT_SLOPE_FRACTION: f64 = 0.25;

/// The Theil-Sen slope of the points of one regime (`None` below three points).
fn regime_slope(b: &Blocks, r: &Regime) -> Option<f64> {
    if r.to - r.from < 3 {
        return None;
    }
    super::trend::theil_sen(&b.t[r.from..r.to], &b.y[r.from..r.to]).map(|(m, _)| m)
}

fn is_flat(b: &Blocks, r: &Regime, reference: f64) -> bool {
    regime_slope(b, r).is_none_or(|m| m < FLAT_SLOPE_FRACTION * reference.max(0.0))
}

/// Why change points explain the growth away, if they do: a long flat end (a warm-up, a cache
/// that filled, a ramp that stopped) or one step carrying the second half's growth between
/// flat regimes (a working set built once). Judged on the second half's envelope, where the
/// blocks are coarse enough that noise does not cut a steady rise into flat pieces; a growth
/// that came in repeated equal steps over the life (a staircase, whatever its sampling) is never
/// "one step".
fn veto(f: &Facts) -> Option<String> {
    let b = &f.envelope.blocks;
    let regimes = &f.cpd.regimes;
    if regimes.len() < 2 {
        return None;
    }
    let reference = f.envelope.slope;
    let half = f.end_s - f.mid_s;
    let last = regimes.last()?;
    if last.duration_s() >= f.params.plateau_fraction * half && is_flat(b, last, reference) {
        let inner = regime_slope(b, last).map_or(0.0, |m| m * last.duration_s());
        if inner < f.min_growth {
            let first = f.life.floor.y.first().copied().unwrap_or(last.level);
            return Some(format!(
                "grew {} in its first {} (start-up, or {} filling to its size), then flat \
                 for {}",
                format::amount((last.level - first).max(0.0), f.params.unit),
                format::duration(last.start_s.max(0.0)),
                filling(f.params.unit),
                format::duration(f.end_s - last.start_s.max(0.0)),
            ));
        }
    }
    let step = f.cpd.largest_step_up();
    if step > 0.0
        && f.life.growth.steps.is_none_or(|s| s.count < 3)
        && f.env_growth - step < f.min_growth
        && regimes.iter().all(|r| is_flat(b, r, reference))
    {
        return Some(format!(
            "its growth is one step of {}, not a steady rise ({})",
            format::amount(step, f.params.unit),
            built_once(f.params.unit)
        ));
    }
    None
}

/// What fills to its size and stops: a cache of memory, a pool of threads or connections.
fn filling(unit: Unit) -> &'static str {
    match unit {
        Unit::Bytes => "a cache",
        Unit::Count => "a pool",
    }
}

/// What is made once and kept: a working set of memory, a pool of threads or open files.
fn built_once(unit: Unit) -> &'static str {
    match unit {
        Unit::Bytes => "a working set built once",
        Unit::Count => "a pool or a set of files opened once",
    }
}

/// Why a second half that did not grow enough is not a leak, in words.
fn not_enough(f: &Facts) -> String {
    let growth = format::amount(f.env_growth.abs(), f.params.unit);
    let min = format::amount(f.min_growth, f.params.unit);
    if f.env_ts_growth >= f.min_growth {
        format!(
            "gave it back: the floor rose {} over the second half of its life but ends {} \
             (a leak keeps {min})",
            format::amount(f.env_ts_growth, f.params.unit),
            if f.env_growth < 0.0 {
                format!("{growth} below where that half began")
            } else {
                format!("only {growth} above where that half began")
            },
        )
    } else if f.env_growth > 0.0 {
        format!(
            "the floor grew only {growth} over the second half of its life, less than the \
             minimum growth of {min}"
        )
    } else {
        format!(
            "no growth: the floor changed by {} over the second half of its life (a leak \
             needs {min})",
            format::amount(f.env_growth, f.params.unit)
        )
    }
}

/// The verdict, the reason in words, the evidence, and each detector's vote.
pub(super) type Decision = (Verdict, String, Evidence, Votes);

/// Applies the rules of the module's documentation for `params.algo`.
pub(super) fn decide(f: &Facts) -> Decision {
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
        phases: false,
    };
    let whole = |detector| Evidence {
        detector,
        ..f.life.growth
    };
    let leak = |e: Evidence| (Verdict::Leak, format::describe(&e), e, votes);
    let ok = |why: String| (Verdict::Ok, why, f.half_evidence, votes);
    match f.params.algo {
        Algo::Lbr => match f.lbr {
            Some(_) => leak(whole(Detector::Lbr)),
            None => ok(
                "no LBR window fits well enough and reaches the limit within the critical time"
                    .into(),
            ),
        },
        Algo::Trend => {
            if trend_rising {
                leak(whole(Detector::Trend))
            } else {
                ok("no significant rising trend in the second half of its life".into())
            }
        }
        Algo::Cpd => {
            if cpd_rising {
                leak(whole(Detector::Cpd))
            } else if let Some(why) = vetoed {
                ok(why)
            } else if !grows {
                ok(not_enough(f))
            } else {
                ok("change points show no level stepping up through the second half".into())
            }
        }
        Algo::Combined => combined(f, grows, vetoed, env_rising, trend_rising, votes),
    }
}

fn combined(
    f: &Facts,
    grows: bool,
    vetoed: Option<String>,
    env_rising: bool,
    trend_rising: bool,
    votes: Votes,
) -> Decision {
    let ok = |why: String| (Verdict::Ok, why, f.half_evidence, votes);
    let life = &f.life;
    let grew = life.peak - life.first >= f.params.min_growth_at(life.first);
    if life.whole && grew && life.growth.steps.is_none() {
        return (
            Verdict::Ok,
            format!(
                "grew to {} in {} and exited: its peak, not a leak (one piece of work, no \
                 repeated steps; phases would show growth across tests)",
                format::amount(life.peak, f.params.unit),
                format::duration(life.span_s)
            ),
            f.life.growth,
            votes,
        );
    }
    if !grows {
        return ok(not_enough(f));
    }
    if life.span_s < f.params.min_life_s {
        return (
            Verdict::Insufficient,
            format!(
                "{} of life, all of it start-up: too short to tell a leak from loading (a \
                 leak is judged over at least {}, or across tests with phases)",
                format::duration(life.span_s),
                format::duration(f.params.min_life_s)
            ),
            f.life.growth,
            votes,
        );
    }
    if let Some(why) = vetoed {
        return ok(why);
    }
    let detector = match () {
        _ if f.lbr.is_some() => Some(Detector::Lbr),
        _ if env_rising => Some(Detector::Envelope),
        _ if trend_rising => Some(Detector::Trend),
        _ => None,
    };
    match detector {
        Some(d) => {
            let e = Evidence {
                detector: d,
                ..f.life.growth
            };
            (Verdict::Leak, format::describe(&e), e, votes)
        }
        None => ok(format!(
            "the floor grew {} over the second half of its life, but not steadily \
             (Mann-Kendall p = {:.3})",
            format::amount(f.env_growth, f.params.unit),
            f.envelope.mk.p_increase
        )),
    }
}

/// The verdict from the tests a process lived through (see [`super::phased`]).
pub(super) fn decide_phases(
    k: &Kept,
    params: &Params,
    evidence: Evidence,
    votes: Votes,
) -> Decision {
    let tests = k.tests();
    let start = k.after[0].1;
    let end = k.after[tests].1;
    let e = Evidence {
        detector: Detector::Phases,
        tests: Some(TestsKept {
            count: tests as u32,
            per_test_bytes: k.per_test,
        }),
        ..evidence
    };
    let votes = Votes {
        phases: matches!(phased::judge(k, params), Judgement::Leak),
        ..votes
    };
    let span = format::span_in(start, end, params.unit);
    match phased::judge(k, params) {
        Judgement::Leak => (Verdict::Leak, format::describe(&e), e, votes),
        Judgement::NoGrowth => (
            Verdict::Ok,
            format!(
                "kept nothing that lasts across {tests} tests after the first (start-up): \
                 {span}"
            ),
            e,
            votes,
        ),
        Judgement::Stopped => (
            Verdict::Ok,
            format!(
                "kept {} over the first of {tests} tests after start-up, then stopped: {} \
                 filling to its size, not a leak ({span})",
                format::amount(k.growth - k.late_growth.max(0.0), params.unit),
                filling(params.unit)
            ),
            e,
            votes,
        ),
        Judgement::Few => (
            Verdict::Ok,
            format!(
                "kept {} across {tests} tests after the first, but not test after test (the \
                 most, {}, after one; {} of them kept some): {}, not a leak",
                format::amount(k.growth, params.unit),
                format::amount(k.largest, params.unit),
                k.rises,
                built_once(params.unit)
            ),
            e,
            votes,
        ),
    }
}

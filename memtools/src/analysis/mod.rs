//! The leak analysis pipeline: pure functions from a history to a verdict, no I/O, no clock.
//!
//! [`analyze_in`] runs the stages on one process's history of one metric:
//! 1. [`gaps`]: clean (sort, merge duplicates, drop trailing zeros), leave out a teardown
//!    ([`life::teardown`]) and cut at gaps;
//! 2. [`resample`]: linear interpolation of each segment onto a uniform grid;
//! 3. [`lbr`]: Linear Backward Regression with O(1) windows;
//! 4. [`life`]: the whole life's floor, its change points, where its growth began, its steps;
//!    [`phased`]: the memory kept after each test, when the harness marked tests;
//!    [`trend`] and [`cpd`]: robust trend, lower envelope, change points over the second half;
//! 5. [`verdict`]: `leak`, `ok` or `insufficient`, with the evidence and a reason in words.
//!
//! Times inside the pipeline are f64 seconds since the run's first sample ([`Overlay::origin`]);
//! results carry absolute [`TimeNs`] where a caller needs them.

pub mod cpd;
pub mod format;
pub mod gaps;
pub mod lbr;
pub mod life;
pub mod params;
pub mod phased;
pub mod resample;
pub mod trend;
pub mod verdict;

use serde::{Deserialize, Serialize};

use crate::model::TimeNs;

pub use self::life::Steps;
pub use self::params::{Algo, GIB, MIB, Params};
pub use self::phased::PhaseSpan;
pub use self::verdict::{Detector, Evidence, LbrEvidence, TestsKept, Verdict, Votes};

use self::cpd::Cpd;
use self::lbr::{Lbr, Sums};
use self::resample::{Grid, seconds, to_time_ns};
use self::trend::{Blocks, MAX_ENVELOPE_BLOCKS, MAX_TREND_BLOCKS, Reduce, Trend};

/// Fewest grid points in the second half of the run for a verdict: the envelope needs at least
/// five blocks of two points.
const MIN_HALF_POINTS: usize = 10;

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

/// The LBR window worth showing: the flagged one of the last segment that has one in the
/// second half, else the best rising window of the last segment.
fn lbr_evidence(
    segments: &[Segment],
    origin: TimeNs,
    mid_s: f64,
    params: &Params,
) -> Option<LbrEvidence> {
    let to_evidence = |flagged: bool, w: &lbr::LbrWindow| LbrEvidence {
        flagged,
        start: to_time_ns(origin, w.start_s),
        end: to_time_ns(origin, w.end_s),
        slope_bytes_per_s: w.fit.slope,
        r2: w.fit.r2,
        growth_bytes: w.growth,
        time_to_limit_s: w.time_to_limit_s,
    };
    let flagged = segments
        .iter()
        .rev()
        .filter(|s| seconds(s.end.saturating_sub(origin)) > mid_s)
        .find_map(|s| {
            let w = s.lbr.as_ref().filter(|l| l.flagged)?.window?;
            let level = w.fit.at(w.start_s);
            (w.growth >= params.min_growth_at(level)).then(|| to_evidence(true, &w))
        });
    flagged.or_else(|| {
        let w = segments.last()?.lbr?.window?;
        Some(to_evidence(false, &w))
    })
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
        few_samples(&mut a, &c, ctx, params, why);
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
    decide(&mut a, &c, ctx, end_s, params);
    a
}

/// A verdict from fewer samples than a shape needs: the tests decide when the process lived
/// through enough of them (each test is the unit of evidence, not each sample, so a coarse
/// sampling interval still judges a quick suite), a whole life that grew is its peak (as it is
/// with more samples, so the verdict does not change with the interval), else `insufficient`.
fn few_samples(a: &mut Analysis, c: &gaps::Cleaned, ctx: &Context, params: &Params, why: String) {
    let n = c.t.len();
    a.reason = why;
    if params.algo != Algo::Combined || n < 2 {
        return;
    }
    let first = c.y[0];
    let grew = a.peak_bytes - first >= params.min_growth_at(first);
    let evidence = Evidence {
        detector: Detector::Envelope,
        slope_bytes_per_s: 0.0,
        r2: 0.0,
        window_start: c.t[0],
        window_end: c.t[n - 1],
        growth_bytes: c.y[n - 1] - first,
        from_bytes: first,
        to_bytes: c.y[n - 1],
        steps: None,
        tests: None,
        time_to_limit_s: None,
        limit_bytes: params.limit_bytes,
        lbr: None,
    };
    if let Some(k) = phased::kept(&c.t, &c.y, &ctx.phases) {
        let (verdict, reason, evidence, votes) = verdict::decide_phases(
            &k,
            params,
            tests_evidence(&k, evidence, params),
            Votes::default(),
        );
        (a.verdict, a.reason, a.evidence) = (verdict, reason, Some(evidence));
        a.overlay.votes = votes;
        a.overlay.kept = Some(k);
    } else if ctx.from_start && ctx.exited && grew {
        a.verdict = Verdict::Ok;
        a.reason = format!(
            "grew to {} in {} and exited: its peak, not a leak (too few samples to see \
             repeated steps; phases would show growth across tests)",
            format::bytes(a.peak_bytes),
            format::duration(seconds(c.t[n - 1].saturating_sub(c.t[0])))
        );
        a.evidence = Some(evidence);
    }
}

/// The evidence of memory kept across tests: the level after the first test to the level after
/// the last, its rate, and the time it takes at that rate to reach the limit.
fn tests_evidence(k: &phased::Kept, base: Evidence, params: &Params) -> Evidence {
    let (first, last) = (k.after[0], k.after[k.after.len() - 1]);
    let span_s = seconds(last.0.saturating_sub(first.0)).max(f64::MIN_POSITIVE);
    let slope = k.growth / span_s;
    let line = lbr::Fit {
        n: 2,
        slope,
        intercept: last.1,
        r2: 1.0,
    };
    Evidence {
        slope_bytes_per_s: slope,
        window_start: first.0,
        window_end: last.0,
        growth_bytes: k.growth,
        from_bytes: first.1,
        to_bytes: last.1,
        steps: None,
        time_to_limit_s: params
            .limit_bytes
            .and_then(|l| lbr::time_to_limit(&line, 0.0, l as f64)),
        ..base
    }
}

/// Stages 4 and 5 over the resampled segments; fills in the verdict, reason and evidence.
fn decide(a: &mut Analysis, c: &gaps::Cleaned, ctx: &Context, end_s: f64, params: &Params) {
    let n = c.t.len();
    let origin = a.overlay.origin;
    let mid_s = end_s / 2.0;
    a.overlay.half_s = mid_s;
    a.overlay.end_s = end_s;
    let overlay = &a.overlay;
    let all = || {
        overlay
            .segments
            .iter()
            .flat_map(|s| s.grid.t.iter().zip(&s.grid.y))
    };
    let half = || all().filter(|(t, _)| **t >= mid_s);
    let mut half_sums = Sums::new(end_s, c.y[n - 1]);
    let mut n_half = 0;
    for (&t, &y) in half() {
        half_sums.add(t, y);
        n_half += 1;
    }
    if end_s.is_nan() || end_s <= 0.0 || n_half < MIN_HALF_POINTS {
        let why = format!(
            "only {n_half} points in the second half of a {} run; at least {MIN_HALF_POINTS} are needed",
            format::duration(end_s)
        );
        few_samples(a, c, ctx, params, why);
        return;
    }
    // The whole life.
    let grid_points = all().count();
    let all_y: Vec<f64> = all().map(|(_, y)| *y).collect();
    let raw_sigma_all = cpd::noise_sigma(&all_y);
    let floor = life::floor(all(), end_s, grid_points, params);
    let life_cpd = life::changes(&floor, raw_sigma_all, params);
    let limit = params.limit_bytes;
    let growth = whole_growth(c, &floor, &life_cpd, origin, end_s, limit, params);
    let lbr = lbr_evidence(&overlay.segments, origin, mid_s, params);
    let growth = Evidence { lbr, ..growth };
    // The second half.
    let env_blocks = trend::blocks(
        half(),
        mid_s,
        end_s,
        (n_half / 2).min(MAX_ENVELOPE_BLOCKS),
        Reduce::Quantile(params.envelope_quantile),
    );
    let med_blocks = trend::blocks(
        half(),
        mid_s,
        end_s,
        n_half.min(MAX_TREND_BLOCKS),
        Reduce::Median,
    );
    let envelope = trend::trend_of(env_blocks, mid_s, end_s);
    let trend = trend::trend_of(med_blocks, mid_s, end_s);
    let Some(envelope) = envelope else {
        let why = "samples too sparse in the second half of the run".to_string();
        few_samples(a, c, ctx, params, why);
        return;
    };
    let b = &envelope.blocks;
    let first_level = trend::median(&mut b.y[..b.y.len().min(3)].to_vec());
    let last_level = b.y[b.y.len() - 1];
    let env_ts_growth = envelope.growth();
    let env_growth = env_ts_growth.min(last_level - first_level);
    let min_growth = params.min_growth_at(first_level);
    let half_y: Vec<f64> = half().map(|(_, y)| *y).collect();
    let raw_sigma = cpd::noise_sigma(&half_y);
    let min_step = params.cpd_min_step_bytes as f64;
    let half_cpd = cpd::pelt(&b.t, &b.y, b.width_s, min_step, Some(raw_sigma));
    let half_r2 = half_sums.fit().map_or(0.0, |f| f.r2);
    let half_evidence = Evidence {
        detector: Detector::Envelope,
        slope_bytes_per_s: envelope.slope,
        r2: half_r2,
        window_start: to_time_ns(origin, mid_s),
        window_end: c.t[n - 1],
        growth_bytes: env_growth,
        from_bytes: first_level,
        to_bytes: last_level,
        steps: None,
        tests: None,
        time_to_limit_s: None,
        limit_bytes: limit,
        lbr,
    };
    let kept = phased::kept(&c.t, &c.y, &ctx.phases);
    let facts = verdict::Facts {
        params,
        mid_s,
        end_s,
        envelope: &envelope,
        trend: trend.as_ref(),
        cpd: &half_cpd,
        lbr: lbr.filter(|l| l.flagged),
        env_growth,
        env_ts_growth,
        min_growth,
        half_evidence,
        life: verdict::LifeFacts {
            span_s: end_s,
            floor: &floor,
            growth,
            peak: a.peak_bytes,
            first: c.y[0],
            whole: ctx.from_start && ctx.exited,
        },
    };
    let (mut verdict, mut reason, mut evidence, mut votes) = verdict::decide(&facts);
    if let (Some(k), Algo::Combined) = (&kept, params.algo) {
        (verdict, reason, evidence, votes) =
            verdict::decide_phases(k, params, tests_evidence(k, growth, params), votes);
    }
    a.verdict = verdict;
    a.reason = reason;
    a.evidence = Some(evidence);
    a.overlay.votes = votes;
    a.overlay.trend = trend;
    a.overlay.envelope = Some(envelope);
    a.overlay.cpd = Some(half_cpd);
    a.overlay.life_floor = Some(floor);
    a.overlay.life_cpd = Some(life_cpd);
    a.overlay.kept = kept;
}

/// The whole growth of a life: from where it began (after the last plateau before the final
/// rise, see [`life::rise_start`]) to the floor at its end, with its rate, R^2, steps and the
/// time it takes at that rate to reach the limit.
fn whole_growth(
    c: &gaps::Cleaned,
    floor: &Blocks,
    life_cpd: &Cpd,
    origin: TimeNs,
    end_s: f64,
    limit: Option<u64>,
    params: &Params,
) -> Evidence {
    let n = c.t.len();
    let (rise_s, from) = life::rise_start(life_cpd, floor, end_s / 8.0).unwrap_or((0.0, c.y[0]));
    // The end level: the floor's last point (its last stretch of time).
    let to = floor.y.last().copied().unwrap_or(c.y[n - 1]);
    let growth = to - from;
    let start = to_time_ns(origin, rise_s);
    let i0 = c.t.partition_point(|&t| t < start);
    let duration = (end_s - rise_s).max(f64::MIN_POSITIVE);
    let slope = growth / duration;
    let mut sums = Sums::new(end_s, c.y[n - 1]);
    for i in i0..n {
        sums.add(seconds(c.t[i].saturating_sub(origin)), c.y[i]);
    }
    let r2 = sums.fit().map_or(0.0, |f| f.r2);
    let steps = life::steps(&c.t[i0..], &c.y[i0..], growth, params);
    let time_to_limit_s = limit.and_then(|l| {
        let line = lbr::Fit {
            n: 2,
            slope,
            intercept: to,
            r2,
        };
        lbr::time_to_limit(&line, 0.0, l as f64)
    });
    Evidence {
        detector: Detector::Envelope,
        slope_bytes_per_s: slope,
        r2,
        window_start: start,
        window_end: c.t[n - 1],
        growth_bytes: growth,
        from_bytes: from,
        to_bytes: to,
        steps,
        tests: None,
        time_to_limit_s,
        limit_bytes: limit,
        lbr: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NS_PER_SEC;

    const T0: TimeNs = 1_714_000_000 * NS_PER_SEC;
    const MIB_F: f64 = MIB as f64;

    /// One sample per second for `n` seconds.
    fn series(n: usize, f: impl Fn(f64) -> f64) -> (Vec<TimeNs>, Vec<f64>) {
        (0..n)
            .map(|i| (T0 + i as i64 * NS_PER_SEC, f(i as f64)))
            .unzip()
    }

    fn run(n: usize, f: impl Fn(f64) -> f64) -> Analysis {
        let (t, y) = series(n, f);
        analyze(&t, &y, &Params::with_limit(16 * GIB))
    }

    #[test]
    fn fast_leak_is_lbr_and_the_evidence_is_the_whole_growth() {
        // 1 GiB + 10 MiB/s for 600 s: ends at 1024 + 5990 MiB, 16384 MiB limit.
        let a = run(600, |x| GIB as f64 + 10.0 * MIB_F * x);
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        let e = a.evidence.unwrap();
        assert_eq!(e.detector, Detector::Lbr);
        // The whole life, not the LBR window that first qualified.
        assert_eq!((e.window_start, e.window_end), (T0, T0 + 599 * NS_PER_SEC));
        assert!(
            (e.slope_bytes_per_s - 10.0 * MIB_F).abs() < 0.2 * MIB_F,
            "{e:?}"
        );
        assert!(
            a.reason
                .starts_with("grew 5.8 GiB over 9 min 59 s, 1.0 -> 6.8 GiB, at 9.8 MiB/s"),
            "{}",
            a.reason
        );
        assert!(
            a.reason.ends_with("reaches the 16 GiB limit in 16 min"),
            "{}",
            a.reason
        );
        // The LBR window is kept, with its own projection from its end.
        let l = e.lbr.unwrap();
        assert!(l.flagged);
        assert_eq!(l.end, T0 + 599 * NS_PER_SEC);
        assert!((l.slope_bytes_per_s - 10.0 * MIB_F).abs() < 1.0);
        let expected = (16384.0 - 1024.0 - 5990.0) / 10.0;
        assert!((l.time_to_limit_s.unwrap() - expected).abs() < 1e-3);
        assert_eq!(a.peak_bytes, GIB as f64 + 10.0 * MIB_F * 599.0);
        let json = serde_json::to_value(a.summary()).unwrap();
        assert_eq!(json["verdict"], "leak");
        assert_eq!(json["evidence"]["detector"], "lbr");
        assert_eq!(json["evidence"]["lbr"]["flagged"], true);
    }

    #[test]
    fn without_a_limit_no_time_to_limit_is_claimed() {
        let (t, y) = series(600, |x| 31.0 * GIB as f64 + 10.0 * MIB_F * x);
        let p = Params {
            limit_bytes: None,
            ..Params::default()
        };
        let a = analyze(&t, &y, &p);
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        assert!(!a.reason.contains("limit"), "{}", a.reason);
        assert_eq!(a.evidence.unwrap().time_to_limit_s, None);
    }

    #[test]
    fn a_staircase_with_a_flat_end_and_a_teardown_is_a_leak() {
        // 3 GiB, +64 MiB every 4.5 s for 5.5 min, flat for 30 s, then torn down in 0.2 s.
        let mut t = Vec::new();
        let mut y = Vec::new();
        for i in 0..3600 {
            let x = i as f64 * 0.1;
            t.push(T0 + (x * 1e9) as i64);
            y.push(3.0 * GIB as f64 + 64.0 * MIB_F * (x.min(330.0) / 4.5).floor());
        }
        for k in 1..=2 {
            t.push(T0 + 360 * NS_PER_SEC + k * 100_000_000);
            y.push(GIB as f64);
        }
        let a = analyze(&t, &y, &Params::with_limit(24 * GIB));
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        assert_eq!(a.teardown, 2);
        let e = a.evidence.unwrap();
        assert_eq!(e.steps.map(|s| s.count), Some(73), "{}", a.reason);
        assert!(
            a.reason
                .starts_with("grew 4.6 GiB over 6 min, 3.0 -> 7.6 GiB, in 73 steps of 64 MiB"),
            "{}",
            a.reason
        );
        // Seen from its start to its exit, the staircase is still repeated work: a leak.
        let ctx = Context {
            from_start: true,
            exited: true,
            phases: Vec::new(),
        };
        let a = analyze_in(&t, &y, &ctx, &Params::with_limit(24 * GIB));
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    }

    #[test]
    fn one_ramp_to_exit_is_its_peak_and_a_short_life_is_too_short() {
        // 20 s at 100 ms, a worker filling a buffer to 4 GiB and exiting.
        let (t, y): (Vec<TimeNs>, Vec<f64>) = (0..200)
            .map(|i| (T0 + i * 100_000_000, 10.0 * MIB_F + i as f64 * 20.5 * MIB_F))
            .unzip();
        let whole = Context {
            from_start: true,
            exited: true,
            phases: Vec::new(),
        };
        let a = analyze_in(&t, &y, &whole, &Params::with_limit(24 * GIB));
        assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
        assert!(
            a.reason
                .starts_with("grew to 4 GiB in 20 s and exited: its peak, not a leak"),
            "{}",
            a.reason
        );
        // Not known to be its whole life: 20 s is too short to tell a leak from loading.
        let a = analyze(&t, &y, &Params::with_limit(24 * GIB));
        assert_eq!(a.verdict, Verdict::Insufficient, "{}", a.reason);
        assert!(
            a.reason
                .starts_with("20 s of life, all of it start-up: too short"),
            "{}",
            a.reason
        );
    }

    #[test]
    fn phases_decide_from_the_memory_kept_after_each_test() {
        // 60 tests of 1 s at 100 ms; each allocates 200 MiB for its length; `kept` stays.
        let run = |kept: f64| {
            let (mut t, mut y, mut phases) = (Vec::new(), Vec::new(), Vec::new());
            let mut level = 100.0 * MIB_F;
            for k in 0..60i64 {
                let begin = T0 + k * NS_PER_SEC;
                phases.push(PhaseSpan {
                    begin,
                    end: begin + NS_PER_SEC - 1,
                });
                for j in 0..10 {
                    t.push(begin + j * 100_000_000);
                    y.push(level + if j > 0 { 200.0 * MIB_F } else { 0.0 });
                }
                level += kept;
            }
            // A second of reporting after the last test.
            for j in 0..10 {
                t.push(T0 + 60 * NS_PER_SEC + j * 100_000_000);
                y.push(level);
            }
            let ctx = Context {
                from_start: true,
                exited: true,
                phases,
            };
            analyze_in(&t, &y, &ctx, &Params::with_limit(24 * GIB))
        };
        let a = run(3.0 * MIB_F);
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        assert_eq!(a.evidence.unwrap().detector, Detector::Phases);
        // The first test is start-up: measured from what it left, 103 MiB.
        assert_eq!(
            a.reason,
            "kept 3 MiB after each of 59 tests, 103 -> 280 MiB; at this rate it reaches the \
             24 GiB limit in 2 h 14 min"
        );
        let a = run(0.0);
        assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
        assert!(
            a.reason
                .starts_with("kept nothing that lasts across 59 tests"),
            "{}",
            a.reason
        );
    }

    #[test]
    fn slow_leak_is_caught_by_the_envelope_when_lbr_is_blind() {
        // 100 KiB/s on 500 MiB: the limit is days away, LBR cannot flag it.
        let a = run(1200, |x| 500.0 * MIB_F + 100.0 * 1024.0 * x);
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        assert_eq!(a.evidence.unwrap().detector, Detector::Envelope);
        assert!(!a.overlay.votes.lbr && a.overlay.votes.envelope);
    }

    #[test]
    fn flat_and_falling_are_ok_unlike_memorytools() {
        let a = run(600, |_| 300.0 * MIB_F);
        assert_eq!(a.verdict, Verdict::Ok);
        assert!(a.reason.starts_with("no growth"), "{}", a.reason);
        // A clean fall (R^2 = 1) that memorytools' epoch-timestamp comparison flags.
        let a = run(600, |x| 4.0 * GIB as f64 - 1e6 * x);
        assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
    }

    #[test]
    fn trailing_zeros_are_an_exit_not_a_release() {
        let (mut t, mut y) = series(600, |x| GIB as f64 + 10.0 * MIB_F * x);
        t.push(T0 + 600 * NS_PER_SEC);
        y.push(0.0);
        let a = analyze(&t, &y, &Params::with_limit(16 * GIB));
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        assert_eq!((a.trailing_zeros, a.samples), (1, 600));
    }

    #[test]
    fn release_step_and_plateau_are_ok() {
        let release = run(600, |x| {
            200.0 * MIB_F + if x < 540.0 { 0.2 * MIB_F * x } else { 0.0 }
        });
        assert_eq!(release.verdict, Verdict::Ok);
        assert!(
            release.reason.starts_with("gave it back"),
            "{}",
            release.reason
        );
        // A step late in the run: most pairs of blocks do not straddle it, so the robust
        // growth is nil.
        let step = run(600, |x| {
            200.0 * MIB_F + if x < 540.0 { 0.0 } else { 50.0 * MIB_F }
        });
        assert_eq!(step.verdict, Verdict::Ok, "{}", step.reason);
        // Steps in the middle of the second half with a little noise: change points see one
        // step between flat levels.
        let step = run(600, |x| {
            let wiggle = if (x as i64 * 7919) % 5 == 0 { 0.3 } else { 0.0 };
            200.0 * MIB_F + if x < 460.0 { 0.0 } else { 50.0 * MIB_F } + wiggle * MIB_F
        });
        assert_eq!(step.verdict, Verdict::Ok, "{}", step.reason);
        let ramp = run(600, |x| 200.0 * MIB_F + 0.5 * MIB_F * x.min(420.0));
        assert_eq!(ramp.verdict, Verdict::Ok);
        assert!(
            ramp.reason.starts_with("grew 210 MiB in its first 7 min"),
            "{}",
            ramp.reason
        );
    }

    #[test]
    fn too_little_data_is_insufficient_and_says_why() {
        let a = analyze(&[], &[], &Params::default());
        assert_eq!(
            (a.verdict, a.reason.as_str()),
            (Verdict::Insufficient, "no samples")
        );
        let a = run(19, |x| x * MIB_F);
        assert_eq!(a.verdict, Verdict::Insufficient);
        assert_eq!(a.reason, "only 19 samples; at least 20 are needed");
        assert!(a.evidence.is_none());
        // Zeros only: a process seen while exiting.
        let a = run(30, |_| 0.0);
        assert_eq!(a.reason, "no samples before the process exited");
        // Plenty of samples, all at the same instant.
        let t = vec![T0; 50];
        let a = analyze(&t, &[1.0; 50], &Params::default());
        assert_eq!(a.verdict, Verdict::Insufficient);
    }

    #[test]
    fn one_hertz_with_gaps_stays_in_long_segments() {
        // 1 Hz leak with two 30 s pauses: three segments, not hundreds of single points.
        let (t, y): (Vec<TimeNs>, Vec<f64>) = (0..900)
            .filter(|i| !(200..230).contains(i) && !(500..530).contains(i))
            .map(|i| (T0 + i * NS_PER_SEC, GIB as f64 + 0.5 * MIB_F * i as f64))
            .unzip();
        let a = analyze(&t, &y, &Params::with_limit(16 * GIB));
        assert_eq!(a.overlay.segments.len(), 3);
        assert_eq!(a.overlay.gap_threshold_s, Some(17.98)); // 2 % of 899 s
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    }
}

//! The leak analysis pipeline: pure functions from a history to a verdict, no I/O, no clock.
//!
//! [`analyze`] runs the stages of docs' "The pipeline" on one process's history of one metric:
//! 1. [`gaps`]: clean (sort, merge duplicates, drop trailing zeros) and cut at gaps;
//! 2. [`resample`]: linear interpolation of each segment onto a uniform grid;
//! 3. [`lbr`]: Linear Backward Regression with O(1) windows;
//! 4. [`trend`] and [`cpd`]: robust trend, lower envelope, change points over the second half;
//! 5. [`verdict`]: `leak`, `ok` or `insufficient`, with the evidence and a reason in words.
//!
//! Times inside the pipeline are f64 seconds since the run's first sample ([`Overlay::origin`]);
//! results carry absolute [`TimeNs`] where a caller needs them.

pub mod cpd;
pub mod format;
pub mod gaps;
pub mod lbr;
pub mod params;
pub mod resample;
pub mod trend;
pub mod verdict;

use serde::{Deserialize, Serialize};

use crate::model::TimeNs;

pub use self::params::{Algo, GIB, MIB, Params};
pub use self::verdict::{Detector, Evidence, Verdict, Votes};

use self::cpd::Cpd;
use self::lbr::{Lbr, Sums};
use self::resample::{Grid, seconds, to_time_ns};
use self::trend::{MAX_ENVELOPE_BLOCKS, MAX_TREND_BLOCKS, Reduce, Trend};

/// Fewest grid points in the second half of the run for a verdict: the envelope needs at least
/// five blocks of two points.
const MIN_HALF_POINTS: usize = 10;

/// The result for one process and metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub verdict: Verdict,
    /// One line a developer understands: the evidence for a leak, why not otherwise.
    pub reason: String,
    /// The numbers behind the verdict; `None` only when insufficient.
    pub evidence: Option<Evidence>,
    /// Samples analysed (after cleaning).
    pub samples: usize,
    /// Trailing 0-byte samples dropped (a process exiting).
    pub trailing_zeros: usize,
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
    /// Change points of the lower envelope.
    pub cpd: Option<Cpd>,
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
        }
    }

    fn insufficient(reason: String, samples: usize, trailing_zeros: usize, o: Overlay) -> Self {
        Analysis {
            verdict: Verdict::Insufficient,
            reason,
            evidence: None,
            samples,
            trailing_zeros,
            overlay: o,
        }
    }
}

/// Analyses one history (times in ns since the epoch, values in bytes). Any input is accepted:
/// unsorted, duplicated, empty, NaN; the result says `insufficient` when it cannot tell.
/// Single-threaded and O(n) apart from sorting unsorted input; callers parallelise across
/// processes.
pub fn analyze(times: &[TimeNs], values: &[f64], params: &Params) -> Analysis {
    let c = gaps::clean(times, values);
    let n = c.t.len();
    let zeros = c.trailing_zeros;
    let mut overlay = Overlay::default();
    if n == 0 {
        let why = if zeros > 0 {
            "no samples before the process exited".to_string()
        } else {
            "no samples".to_string()
        };
        return Analysis::insufficient(why, 0, zeros, overlay);
    }
    let origin = c.t[0];
    overlay.origin = origin;
    let min_window = params.min_window.max(3);
    if n < min_window {
        let noun = if n == 1 { "sample" } else { "samples" };
        let why = format!("only {n} {noun}; at least {min_window} are needed");
        return Analysis::insufficient(why, n, zeros, overlay);
    }
    let end_s = seconds(c.t[n - 1].saturating_sub(origin));
    let threshold = gaps::gap_threshold_ns(&c.t, params);
    overlay.gap_threshold_s = threshold.map(seconds);
    for range in gaps::split(&c.t, threshold) {
        let (t, y) = (&c.t[range.clone()], &c.y[range]);
        let grid = resample::resample(t, y, origin, resample::grid_step_s(t, params));
        let lbr = lbr::lbr(&grid, params);
        overlay.segments.push(Segment {
            start: t[0],
            end: t[t.len() - 1],
            samples: t.len(),
            grid,
            lbr,
        });
    }
    let mid_s = end_s / 2.0;
    overlay.half_s = mid_s;
    overlay.end_s = end_s;
    let half = || {
        overlay
            .segments
            .iter()
            .flat_map(|s| s.grid.t.iter().zip(&s.grid.y))
            .filter(|(t, _)| **t >= mid_s)
    };
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
        return Analysis::insufficient(why, n, zeros, overlay);
    }
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
    overlay.trend = trend::trend_of(med_blocks, mid_s, end_s);
    let Some(envelope) = envelope else {
        let why = "samples too sparse in the second half of the run".to_string();
        return Analysis::insufficient(why, n, zeros, overlay);
    };
    let b = &envelope.blocks;
    let first_level = trend::median(&mut b.y[..b.y.len().min(3)].to_vec());
    let last_level = b.y[b.y.len() - 1];
    let env_ts_growth = envelope.growth();
    let env_growth = env_ts_growth.min(last_level - first_level);
    let min_growth = params.min_growth_at(first_level);
    // Noise at the sampling resolution, which a leak's own steps do not inflate.
    let half_y: Vec<f64> = half().map(|(_, y)| *y).collect();
    let raw_sigma = cpd::noise_sigma(&half_y);
    let min_step = params.cpd_min_step_bytes as f64;
    let cpd = cpd::pelt(&b.t, &b.y, b.width_s, min_step, Some(raw_sigma));

    let limit = params.limit_bytes as f64;
    let half_r2 = half_sums.fit().map_or(0.0, |f| f.r2);
    let trend_like = |detector, tr: &Trend, growth: f64| {
        let line = lbr::Fit {
            n: tr.blocks.t.len(),
            slope: tr.slope,
            intercept: tr.intercept,
            r2: half_r2,
        };
        Evidence {
            detector,
            slope_bytes_per_s: tr.slope,
            r2: half_r2,
            window_start: to_time_ns(origin, mid_s),
            window_end: c.t[n - 1],
            growth_bytes: growth,
            time_to_limit_s: lbr::time_to_limit(&line, end_s, limit),
            limit_bytes: params.limit_bytes,
            before_end_s: 0.0,
        }
    };
    let env_evidence = trend_like(Detector::Envelope, &envelope, env_growth);
    let trend_evidence = overlay
        .trend
        .as_ref()
        .map(|t| trend_like(Detector::Trend, t, t.growth()));
    let lbr_evidence = overlay
        .segments
        .iter()
        .rev()
        .filter(|s| seconds(s.end.saturating_sub(origin)) > mid_s)
        .find_map(|s| {
            let w = s.lbr.as_ref().filter(|l| l.flagged)?.window?;
            let level = w.fit.at(w.start_s);
            (w.growth >= params.min_growth_at(level)).then(|| Evidence {
                detector: Detector::Lbr,
                slope_bytes_per_s: w.fit.slope,
                r2: w.fit.r2,
                window_start: to_time_ns(origin, w.start_s),
                window_end: to_time_ns(origin, w.end_s),
                growth_bytes: w.growth,
                time_to_limit_s: w.time_to_limit_s,
                limit_bytes: params.limit_bytes,
                before_end_s: (end_s - w.end_s).max(0.0),
            })
        });
    let facts = verdict::Facts {
        params,
        mid_s,
        end_s,
        envelope: &envelope,
        trend: overlay.trend.as_ref(),
        cpd: &cpd,
        lbr: lbr_evidence,
        env_growth,
        env_ts_growth,
        min_growth,
        env_evidence,
        trend_evidence,
    };
    let (verdict, reason, evidence, votes) = verdict::decide(&facts);
    overlay.votes = votes;
    overlay.envelope = Some(envelope);
    overlay.cpd = Some(cpd);
    Analysis {
        verdict,
        reason,
        evidence: Some(evidence),
        samples: n,
        trailing_zeros: zeros,
        overlay,
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
    fn fast_leak_is_lbr_with_time_to_limit_from_the_window_end() {
        // 1 GiB + 10 MiB/s for 600 s: ends at 1024 + 5990 MiB, 16384 MiB limit.
        let a = run(600, |x| GIB as f64 + 10.0 * MIB_F * x);
        assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
        let e = a.evidence.unwrap();
        assert_eq!(e.detector, Detector::Lbr);
        assert_eq!(e.window_end, T0 + 599 * NS_PER_SEC);
        assert_eq!(e.before_end_s, 0.0);
        assert!((e.slope_bytes_per_s - 10.0 * MIB_F).abs() < 1.0);
        let expected = (16384.0 - 1024.0 - 5990.0) / 10.0;
        assert!((e.time_to_limit_s.unwrap() - expected).abs() < 1e-3);
        assert!(
            a.reason.contains("reaches the 16 GiB limit in 15 min 37 s"),
            "{}",
            a.reason
        );
        let json = serde_json::to_value(a.summary()).unwrap();
        assert_eq!(json["verdict"], "leak");
        assert_eq!(json["evidence"]["detector"], "lbr");
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
            release.reason.starts_with("released at the end"),
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
            ramp.reason.starts_with("flat for the last"),
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

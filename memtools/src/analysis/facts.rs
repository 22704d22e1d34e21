//! Stages 4 and 5 of [`super::analyze_in`]: the facts of a life (its floor and change points,
//! its whole growth, the second half's trends, the memory kept across its tests) gathered and
//! handed to [`super::verdict`].

use crate::model::TimeNs;

use super::cpd::{self, Cpd};
use super::lbr::{self, Sums};
use super::params::{Algo, Params};
use super::resample::{seconds, to_time_ns};
use super::trend::{self, Blocks, MAX_ENVELOPE_BLOCKS, MAX_TREND_BLOCKS, Reduce};
use super::{Analysis, Context, Detector, Evidence, LbrEvidence, Segment, Verdict, Votes};
use super::{format, gaps, life, phased, verdict};

/// Fewest grid points in the second half of the run for a verdict: the envelope needs at least
/// five blocks of two points.
const MIN_HALF_POINTS: usize = 10;

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

/// A verdict from fewer samples than a shape needs: the tests decide when the process lived
/// through enough of them (each test is the unit of evidence, not each sample, so a coarse
/// sampling interval still judges a quick suite), a whole life that grew is its peak (as it is
/// with more samples, so the verdict does not change with the interval), else `insufficient`.
pub(super) fn few_samples(
    a: &mut Analysis,
    c: &gaps::Cleaned,
    ctx: &Context,
    params: &Params,
    why: String,
) {
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
        unit: params.unit,
    };
    if let Some(k) = phased::kept(&c.t, &c.y, &ctx.phases, params.scale().resolution) {
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
            format::amount(a.peak_bytes, params.unit),
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

/// Stages 4 and 5 over the resampled segments: the whole life, the second half, the tests;
/// fills in the verdict, reason, evidence and overlay.
pub(super) fn decide(
    a: &mut Analysis,
    c: &gaps::Cleaned,
    ctx: &Context,
    end_s: f64,
    params: &Params,
) {
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
    let half_y: Vec<f64> = half().map(|(_, y)| *y).collect();
    let h = half_facts(&envelope, &half_y, params);
    let half_evidence = Evidence {
        detector: Detector::Envelope,
        slope_bytes_per_s: envelope.slope,
        r2: half_sums.fit().map_or(0.0, |f| f.r2),
        window_start: to_time_ns(origin, mid_s),
        window_end: c.t[n - 1],
        growth_bytes: h.env_growth,
        from_bytes: h.first_level,
        to_bytes: h.last_level,
        steps: None,
        tests: None,
        time_to_limit_s: None,
        limit_bytes: limit,
        lbr,
        unit: params.unit,
    };
    let kept = phased::kept(&c.t, &c.y, &ctx.phases, params.scale().resolution);
    let facts = verdict::Facts {
        params,
        mid_s,
        end_s,
        envelope: &envelope,
        trend: trend.as_ref(),
        cpd: &h.cpd,
        lbr: lbr.filter(|l| l.flagged),
        env_growth: h.env_growth,
        env_ts_growth: h.env_ts_growth,
        min_growth: h.min_growth,
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
    a.overlay.cpd = Some(h.cpd);
    a.overlay.life_floor = Some(floor);
    a.overlay.life_cpd = Some(life_cpd);
    a.overlay.kept = kept;
}

/// What the second half's lower envelope says.
struct Half {
    /// Where the envelope begins (the median of its first three blocks) and ends, bytes.
    first_level: f64,
    last_level: f64,
    /// Theil-Sen growth over the half, and the same capped by where it ends.
    env_ts_growth: f64,
    env_growth: f64,
    /// The minimum growth at this level.
    min_growth: f64,
    /// Change points of the envelope, the noise measured on the half's own points.
    cpd: Cpd,
}

fn half_facts(envelope: &trend::Trend, half_y: &[f64], params: &Params) -> Half {
    let b = &envelope.blocks;
    let first_level = trend::median(&mut b.y[..b.y.len().min(3)].to_vec());
    let last_level = b.y[b.y.len() - 1];
    let env_ts_growth = envelope.growth();
    let raw_sigma = cpd::noise_sigma(half_y);
    let min_step = params.min_step();
    Half {
        first_level,
        last_level,
        env_ts_growth,
        env_growth: env_ts_growth.min(last_level - first_level),
        min_growth: params.min_growth_at(first_level),
        cpd: cpd::pelt(&b.t, &b.y, b.width_s, min_step, Some(raw_sigma)),
    }
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
        unit: params.unit,
    }
}

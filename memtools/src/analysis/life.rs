//! The whole life of a process at a resolution that does not depend on how it was sampled:
//! its teardown, its floor over time, where its growth began, and the steps it grew in.
//!
//! A leak is judged on the shape of the whole life, not on a short window near its end: the
//! floor (a low quantile of each of at most [`LIFE_BLOCKS`] equal stretches of time) looks the
//! same whether the process was sampled every 10 ms, every 500 ms or in bursts with pauses.

use crate::model::TimeNs;

use super::cpd::{self, Cpd};
use super::params::Params;
use super::resample::seconds;
use super::trend::{self, Blocks, Reduce};

/// Stretches of time the whole life is cut into for its floor: fine enough to see a staircase
/// of dozens of steps and a plateau of 1/16 of the life, coarse enough that a block of a bursty
/// recording usually holds a burst.
pub const LIFE_BLOCKS: usize = 64;

/// A drop just before the history ends that lasts at most this fraction of the life is the
/// process tearing down (an interpreter freeing its heap as it exits), not memory given back.
pub const TEARDOWN_FRACTION: f64 = 0.01;

/// How many trailing samples are a teardown: a drop of at least the minimum growth (and well
/// above the noise) after which every sample stays lower, the lower samples spanning at most
/// [`TEARDOWN_FRACTION`] of the life (a pause in the sampling before the drop does not count:
/// the process was not seen living on with less). `t` in ns, sorted; 0 when there is none.
pub fn teardown(t: &[TimeNs], y: &[f64], params: &Params) -> usize {
    let n = t.len().min(y.len());
    if n < 4 {
        return 0;
    }
    let life = t[n - 1].saturating_sub(t[0]) as f64;
    let mut suffix_max = f64::NEG_INFINITY;
    let mut found = 0;
    for j in (1..n).rev() {
        if (t[n - 1].saturating_sub(t[j]) as f64) > TEARDOWN_FRACTION * life {
            break;
        }
        suffix_max = suffix_max.max(y[j]);
        let before = y[j - 1];
        if suffix_max < before - params.min_growth_at(before) {
            found = n - j;
        }
    }
    // Well above the noise too (measured only when there is a drop to check: it costs a pass).
    if found > 0 {
        let noise = cpd::noise_sigma(&y[..n]);
        let j = n - found;
        let top = y[j..n].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if top >= y[j - 1] - 5.0 * noise {
            found = 0;
        }
    }
    // Never the whole history.
    found.min(n - 2)
}

/// The floor of the whole life: a low quantile of each of up to [`LIFE_BLOCKS`] stretches of
/// time (empty ones, in pauses and gaps, skipped), over the resampled points.
pub fn floor<'a>(
    points: impl Iterator<Item = (&'a f64, &'a f64)>,
    end_s: f64,
    grid_points: usize,
    params: &Params,
) -> Blocks {
    trend::blocks(
        points,
        0.0,
        end_s,
        (grid_points / 2).clamp(1, LIFE_BLOCKS),
        Reduce::Quantile(params.envelope_quantile),
    )
}

/// Change points of the life's floor, with the noise measured at the sampling resolution.
pub fn changes(floor: &Blocks, raw_sigma: f64, params: &Params) -> Cpd {
    cpd::pelt(
        &floor.t,
        &floor.y,
        floor.width_s,
        params.min_step(),
        Some(raw_sigma),
    )
}

/// Where the growth that ends the life began: the first regime of the last unbroken run of
/// regimes each higher than the one before, broken by a plateau (a regime seen for at least
/// `min_plateau_s`, in the lowest quarter of the range). Returns its start (seconds since the run's origin) and the level it rose
/// from: the plateau's, or the first floor point's when the rise began with the life. A
/// warm-up that went straight into a leak is part of the rise; a plateau between them ends it.
pub fn rise_start(c: &Cpd, floor: &Blocks, min_plateau_s: f64) -> Option<(f64, f64)> {
    let r = &c.regimes;
    // How long a regime was seen: its blocks, not the time it spans (a pause in the sampling
    // inside it is not a plateau).
    let seen = |g: &super::cpd::Regime| (g.to - g.from) as f64 * floor.width_s;
    // Only a plateau in the lowest quarter of the range ends the rise: a pause near the top
    // (the process resting between two bursts of leaking) is part of it.
    let top = r.last()?.level;
    let low = r.iter().map(|g| g.level).fold(f64::INFINITY, f64::min);
    let ends_rise =
        |g: &super::cpd::Regime| seen(g) >= min_plateau_s && g.level <= low + 0.25 * (top - low);
    let mut k = r.len().checked_sub(1)?;
    while k > 0 && r[k].level > r[k - 1].level && !ends_rise(&r[k - 1]) {
        k -= 1;
    }
    if k > 0 && r[k].level > r[k - 1].level {
        return Some((r[k].start_s.max(0.0), r[k - 1].level));
    }
    let first = floor.y.get(r[k].from).copied()?;
    Some((r[k].start_s.max(0.0), first.min(r[k].level)))
}

/// Growth that came in equal steps: how many, and of what size.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Steps {
    pub count: u32,
    pub size_bytes: f64,
}

/// How fine a staircase can be and still count as one: the floor is looked at per stretch of
/// this long (or two sampling intervals, when coarser), so steps finer than that read as a
/// ramp at every sampling interval alike.
pub const STEP_RESOLUTION_NS: i64 = 1_000_000_000;

/// The steps a growth came in, when it came in equal ones separated by flat stretches: the
/// history's lowest value per [`STEP_RESOLUTION_NS`] stretch rises in at most half of the
/// consecutive stretches, each rise is close to a whole number of one step size (rises across
/// a pause in the sampling hold several), and the rises add up to most of the growth. `None`
/// for a ramp, which rises in every stretch. `t` sorted, in ns.
pub fn steps(t: &[TimeNs], y: &[f64], growth: f64, params: &Params) -> Option<Steps> {
    let n = t.len().min(y.len());
    if n < 3 || growth <= 0.0 {
        return None;
    }
    let width = super::gaps::median_interval(&t[..n])
        .map_or(STEP_RESOLUTION_NS, |m| m.saturating_mul(2))
        .max(STEP_RESOLUTION_NS);
    // (stretch index, lowest value) of every non-empty stretch, in order.
    let mut lows: Vec<(i64, f64)> = Vec::new();
    for i in 0..n {
        let k = t[i].saturating_sub(t[0]) / width;
        match lows.last_mut() {
            Some((last, v)) if *last == k => *v = v.min(y[i]),
            _ => lows.push((k, y[i])),
        }
    }
    let values: Vec<f64> = lows.iter().map(|l| l.1).collect();
    let noise = cpd::noise_sigma(&values);
    let least = params.min_step().max(8.0 * noise);
    let (mut adjacent, mut adjacent_rising) = (0usize, 0usize);
    let mut rises = Vec::new();
    for w in lows.windows(2) {
        let d = w[1].1 - w[0].1;
        if w[1].0 == w[0].0 + 1 {
            adjacent += 1;
            adjacent_rising += usize::from(d >= least);
        }
        if d >= least {
            rises.push(d);
        }
    }
    if rises.len() < 3 || (adjacent >= 4 && 2 * adjacent_rising > adjacent) {
        return None;
    }
    let mut sorted = rises.clone();
    sorted.sort_by(f64::total_cmp);
    // The step: the median of the smallest third of the rises (most rises are single steps
    // when the sampling is finer than the stairs; the rest are multiples).
    let size = trend::median(&mut sorted[..rises.len().div_ceil(3)].to_vec());
    if !(size.is_finite() && size > 0.0) {
        return None;
    }
    let (mut whole, mut count) = (0.0, 0.0);
    for &d in &rises {
        let k = (d / size).round();
        if k >= 1.0 && (d - k * size).abs() <= 0.1 * size * k.sqrt() {
            whole += d;
            count += k;
        }
    }
    let total: f64 = rises.iter().sum();
    // Most of the rising must be whole steps, and the steps most of the growth.
    if whole < 0.8 * total || count * size < 0.6 * growth || count < 3.0 {
        return None;
    }
    Some(Steps {
        count: (growth / size).round().max(1.0) as u32,
        size_bytes: size,
    })
}

/// The value of a time-ordered history at `t` (ns): the last sample at or before it.
pub fn value_at(t: &[TimeNs], y: &[f64], at: TimeNs) -> Option<f64> {
    let i = t.partition_point(|&x| x <= at);
    i.checked_sub(1).map(|i| y[i])
}

/// Seconds of a life, first to last sample.
pub fn span_s(t: &[TimeNs]) -> f64 {
    match (t.first(), t.last()) {
        (Some(a), Some(b)) => seconds(b.saturating_sub(*a)),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::MIB;

    const M: f64 = MIB as f64;

    #[test]
    fn a_drop_in_the_last_moments_is_a_teardown_a_long_one_is_not() {
        let p = Params::default();
        // 1000 s at 1 Hz, 500 MiB, falling to 100 MiB over the last 3 s.
        let t: Vec<TimeNs> = (0..1000).map(|i| i * 1_000_000_000).collect();
        let mut y = vec![500.0 * M; 1000];
        y[997] = 300.0 * M;
        y[998] = 150.0 * M;
        y[999] = 100.0 * M;
        assert_eq!(teardown(&t, &y, &p), 3);
        // Given back 50 s before the end: the process lived on with less, a release.
        let mut y = vec![500.0 * M; 1000];
        for v in &mut y[950..] {
            *v = 100.0 * M;
        }
        assert_eq!(teardown(&t, &y, &p), 0);
        // A rise at the end is no teardown.
        let mut y = vec![500.0 * M; 1000];
        y[999] = 600.0 * M;
        assert_eq!(teardown(&t, &y, &p), 0);
    }

    #[test]
    fn equal_steps_are_counted_even_across_pauses() {
        let p = Params::default();
        let s = 1_000_000_000;
        // 64 MiB steps every 4 s sampled every 0.5 s, then three at once across a 12 s pause.
        let (mut t, mut y) = (Vec::new(), Vec::new());
        for i in 0..80 {
            t.push(i * s / 2);
            y.push(3000.0 * M + (i / 8) as f64 * 64.0 * M);
        }
        t.push(52 * s);
        y.push(3000.0 * M + 13.0 * 64.0 * M);
        let st = steps(&t, &y, 13.0 * 64.0 * M, &p).unwrap();
        assert_eq!(st.count, 13);
        assert!((st.size_bytes - 64.0 * M).abs() < 1.0);
        // The same rise as a ramp, at 0.5 s or at 10 ms: no steps.
        for dt in [s / 2, s / 100] {
            let t: Vec<TimeNs> = (0..(40 * s / dt)).map(|i| i * dt).collect();
            let y: Vec<f64> = t
                .iter()
                .map(|&x| 3000.0 * M + x as f64 / s as f64 * 21.0 * M)
                .collect();
            assert_eq!(steps(&t, &y, 13.0 * 64.0 * M, &p), None, "{dt}");
        }
    }

    #[test]
    fn the_rise_starts_after_the_last_plateau() {
        let c = cpd::pelt(
            &[0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5],
            &[10.0, 20.0, 20.0, 20.0, 60.0, 70.0, 80.0, 90.0],
            1.0,
            1.0,
            Some(0.0),
        );
        let floor = Blocks {
            t: vec![0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5],
            y: vec![10.0, 20.0, 20.0, 20.0, 60.0, 70.0, 80.0, 90.0],
            width_s: 1.0,
        };
        // The three blocks at 20 are a plateau low in the range: the rise starts after them.
        assert_eq!(rise_start(&c, &floor, 2.5), Some((4.0, 20.0)));
        // Without a plateau, the whole life is one rise from its first point.
        assert_eq!(rise_start(&c, &floor, 10.0), Some((0.0, 10.0)));
    }
}

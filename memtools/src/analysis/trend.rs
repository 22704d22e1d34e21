//! Stage 4a: robust trends for short runs, where time-to-limit is blind.
//!
//! The series is first reduced to blocks of equal duration (the median of each block for the
//! trend, a low quantile for the lower envelope). That bounds the O(n^2) Theil-Sen and
//! Mann-Kendall to at most [`MAX_TREND_BLOCKS`] points however long the run (instead of the
//! 7,200 of an hour at 0.5 s), and the low quantile is what makes a garbage collector's sawtooth
//! harmless: its floor is what leaks, not its teeth.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// Blocks for the robust trend of the second half (Theil-Sen over at most 2,016 pairs).
pub const MAX_TREND_BLOCKS: usize = 64;
/// Blocks for the lower envelope of the second half: each lasts 1/32 of the run, so a sawtooth
/// period shorter than that shows only its floor.
pub const MAX_ENVELOPE_BLOCKS: usize = 16;

/// How a block is summarised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    Min,
    Median,
    /// The q-quantile (nearest rank below), 0 <= q <= 1: q = 0.1 is a lower envelope that,
    /// unlike the minimum, is not dragged around by the most extreme noise sample of each block.
    Quantile(f64),
}

/// A reduced series: one point per non-empty block, at the block's centre time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Blocks {
    /// Block centre times, seconds since the run's origin.
    pub t: Vec<f64>,
    /// The block's minimum, median or quantile, bytes.
    pub y: Vec<f64>,
    /// Duration of one block, seconds.
    pub width_s: f64,
}

/// Cuts [from, to] into `count` blocks of equal duration and reduces the points of each; points
/// outside are ignored, empty blocks (gaps) are skipped. `points` must be sorted by time.
pub fn blocks<'a>(
    points: impl Iterator<Item = (&'a f64, &'a f64)>,
    from: f64,
    to: f64,
    count: usize,
    how: Reduce,
) -> Blocks {
    let mut out = Blocks::default();
    if count == 0 || from.is_nan() || to.is_nan() || to <= from {
        return out;
    }
    let width = (to - from) / count as f64;
    out.width_s = width;
    let mut current: Option<usize> = None;
    let mut buf: Vec<f64> = Vec::new();
    let flush = |k: usize, buf: &mut Vec<f64>, out: &mut Blocks| {
        if buf.is_empty() {
            return;
        }
        let v = match how {
            Reduce::Min => buf.iter().copied().fold(f64::INFINITY, f64::min),
            Reduce::Median => median(buf),
            Reduce::Quantile(q) => {
                let k = (q.clamp(0.0, 1.0) * (buf.len() - 1) as f64) as usize;
                *buf.select_nth_unstable_by(k, f64::total_cmp).1
            }
        };
        out.t.push(from + (k as f64 + 0.5) * width);
        out.y.push(v);
        buf.clear();
    };
    for (&t, &y) in points {
        if t < from || t > to {
            continue;
        }
        let k = (((t - from) / width) as usize).min(count - 1);
        if current != Some(k) {
            if let Some(c) = current {
                flush(c, &mut buf, &mut out);
            }
            current = Some(k);
        }
        buf.push(y);
    }
    if let Some(c) = current {
        flush(c, &mut buf, &mut out);
    }
    out
}

/// Median of a non-empty slice (reorders it); mean of the two middle values for an even count.
/// NaN for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        return hi;
    }
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    lo + (hi - lo) / 2.0
}

/// Theil-Sen line: the median of all pairwise slopes, and the median of y - slope t as the
/// intercept. Robust to a few outliers (a spike, a dip). `None` below two distinct times.
pub fn theil_sen(t: &[f64], y: &[f64]) -> Option<(f64, f64)> {
    let n = t.len().min(y.len());
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let dt = t[j] - t[i];
            if dt != 0.0 {
                let s = (y[j] - y[i]) / dt;
                if s.is_finite() {
                    slopes.push(s);
                }
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    let slope = median(&mut slopes);
    let mut r: Vec<f64> = (0..n).map(|i| y[i] - slope * t[i]).collect();
    let intercept = median(&mut r);
    (slope.is_finite() && intercept.is_finite()).then_some((slope, intercept))
}

/// The Mann-Kendall test of a monotone trend in a series ordered by time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MannKendall {
    /// Concordant minus discordant pairs.
    pub s: i64,
    /// Variance of S under no trend, corrected for ties.
    pub var_s: f64,
    /// Normal score with continuity correction.
    pub z: f64,
    /// One-sided p-value of an increasing trend.
    pub p_increase: f64,
}

/// Mann-Kendall on `y` (already in time order), normal approximation with tie correction.
pub fn mann_kendall(y: &[f64]) -> MannKendall {
    let n = y.len();
    let mut s: i64 = 0;
    for i in 0..n {
        for j in i + 1..n {
            s += match y[j].partial_cmp(&y[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    let mut sorted = y.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && sorted[j] == sorted[i] {
            j += 1;
        }
        let g = (j - i) as f64;
        ties += g * (g - 1.0) * (2.0 * g + 5.0);
        i = j.max(i + 1);
    }
    let nf = n as f64;
    let var_s = ((nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0).max(0.0);
    let z = if var_s <= 0.0 || s == 0 {
        0.0
    } else if s > 0 {
        (s - 1) as f64 / var_s.sqrt()
    } else {
        (s + 1) as f64 / var_s.sqrt()
    };
    let p_increase = if var_s <= 0.0 {
        1.0
    } else {
        Normal::standard().sf(z)
    };
    MannKendall {
        s,
        var_s,
        z,
        p_increase,
    }
}

/// A robust trend over a window: Theil-Sen line and Mann-Kendall test of the reduced points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// The reduced points the trend was computed on (for the GUI).
    pub blocks: Blocks,
    /// Theil-Sen slope, bytes/s.
    pub slope: f64,
    /// Theil-Sen intercept at t = 0 (the run's origin).
    pub intercept: f64,
    pub mk: MannKendall,
    /// Window, seconds since the run's origin.
    pub from_s: f64,
    pub to_s: f64,
}

impl Trend {
    /// Theil-Sen slope times the window's duration, bytes.
    pub fn growth(&self) -> f64 {
        self.slope * (self.to_s - self.from_s)
    }

    /// An increasing trend significant at `alpha`.
    pub fn rising(&self, alpha: f64) -> bool {
        self.slope > 0.0 && self.mk.s > 0 && self.mk.p_increase < alpha
    }
}

/// Theil-Sen and Mann-Kendall on already reduced blocks. `None` below three blocks.
pub fn trend_of(blocks: Blocks, from_s: f64, to_s: f64) -> Option<Trend> {
    if blocks.t.len() < 3 {
        return None;
    }
    let (slope, intercept) = theil_sen(&blocks.t, &blocks.y)?;
    let mk = mann_kendall(&blocks.y);
    Some(Trend {
        blocks,
        slope,
        intercept,
        mk,
        from_s,
        to_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theil_sen_ignores_an_outlier() {
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        let y = [0.0, 2.0, 4.0, 100.0, 8.0];
        let (m, c) = theil_sen(&t, &y).unwrap();
        assert_eq!(m, 2.0);
        assert_eq!(c, 0.0);
        assert!(theil_sen(&[1.0, 1.0], &[0.0, 1.0]).is_none());
    }

    #[test]
    fn mann_kendall_by_hand() {
        // y = 1, 2, 3, 4: S = 6, var = 4*3*13/18 = 26/3, z = 5 / sqrt(26/3).
        let mk = mann_kendall(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mk.s, 6);
        assert!((mk.var_s - 26.0 / 3.0).abs() < 1e-12);
        assert!((mk.z - 5.0 / (26.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert!(mk.p_increase < 0.05);
        // Ties: y = 1, 1, 2: S = 2; var = (3*2*11 - 2*1*9) / 18 = 48/18.
        let mk = mann_kendall(&[1.0, 1.0, 2.0]);
        assert_eq!(mk.s, 2);
        assert!((mk.var_s - 48.0 / 18.0).abs() < 1e-12);
        // All equal: no evidence at all.
        let mk = mann_kendall(&[5.0; 10]);
        assert_eq!((mk.s, mk.z, mk.p_increase), (0, 0.0, 1.0));
        assert!(mann_kendall(&[9.0, 8.0, 7.0]).p_increase > 0.5);
    }

    #[test]
    fn blocks_reduce_and_skip_empty_ones() {
        let t = [0.0, 1.0, 2.0, 3.0, 7.0, 8.0];
        let y = [5.0, 3.0, 4.0, 9.0, 1.0, 2.0];
        let b = blocks(t.iter().zip(&y), 0.0, 8.0, 4, Reduce::Min);
        // Blocks [0,2) [2,4) [4,6) [6,8]: mins 3, 4, (empty), 1.
        assert_eq!(b.t, vec![1.0, 3.0, 7.0]);
        assert_eq!(b.y, vec![3.0, 4.0, 1.0]);
        let b = blocks(t.iter().zip(&y), 0.0, 8.0, 4, Reduce::Median);
        assert_eq!(b.y, vec![4.0, 6.5, 1.5]);
        let b = blocks(t.iter().zip(&y), 0.0, 8.0, 2, Reduce::Quantile(0.34));
        // [0, 4): 3 4 5 9 -> rank 1 is 4; [4, 8]: 1 2 -> rank 0 is 1.
        assert_eq!(b.y, vec![4.0, 1.0]);
        assert!(
            blocks(t.iter().zip(&y), 1.0, 1.0, 4, Reduce::Min)
                .t
                .is_empty()
        );
    }

    #[test]
    fn median_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}

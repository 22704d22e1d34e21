//! Stage 4b: change-point segmentation (PELT, piecewise-constant levels).
//!
//! Used to tell "keeps rising" from "rose once": a warm-up or a single step followed by a
//! plateau is segmented into a few levels with a long flat last one. The penalty is in the data's
//! own units (bytes^2): max(2 sigma^2 ln n, min_step^2), with sigma estimated from the median
//! absolute deviation of successive differences, so noise never pays for a change but a step of
//! `min_step` bytes on clean data does. memorytools instead thresholds z-scores of the derivative
//! at 3, which has no unit and fires on every sample of a noisy series.

use serde::{Deserialize, Serialize};

use super::trend::median;

/// One constant level between change points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Regime {
    /// Start and end, seconds since the run's origin (block edges, not centres).
    pub start_s: f64,
    pub end_s: f64,
    /// Index range in the segmented points.
    pub from: usize,
    pub to: usize,
    /// Mean level, bytes.
    pub level: f64,
}

impl Regime {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.end_s - self.start_s
    }
}

/// The segmentation and what it was paid for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpd {
    pub regimes: Vec<Regime>,
    /// Penalty per change point, bytes^2.
    pub penalty: f64,
    /// Noise estimate, bytes.
    pub sigma: f64,
}

/// Robust noise estimate: MAD of successive differences / (0.6745 sqrt 2). A trend or a few
/// steps barely move it; white noise of standard deviation s gives about s.
pub fn noise_sigma(y: &[f64]) -> f64 {
    if y.len() < 3 {
        return 0.0;
    }
    let mut d: Vec<f64> = y.windows(2).map(|w| w[1] - w[0]).collect();
    let m = median(&mut d.clone());
    for v in &mut d {
        *v = (*v - m).abs();
    }
    let mad = median(&mut d);
    let s = mad / (0.6745 * std::f64::consts::SQRT_2);
    if s.is_finite() { s } else { 0.0 }
}

/// PELT (Killick et al. 2012) with the squared-error cost of a constant level. `t` are point
/// times (block centres) and `width_s` the duration each point stands for; O(n^2) at worst, on
/// the few dozen blocks it is given. The noise is estimated from `y`, capped by `sigma_cap`:
/// differences between blocks also carry the signal (a leak's own steps inflate them), so a
/// caller that knows the noise at the sampling resolution passes it.
pub fn pelt(t: &[f64], y: &[f64], width_s: f64, min_step: f64, sigma_cap: Option<f64>) -> Cpd {
    let n = t.len().min(y.len());
    if n == 0 {
        return Cpd::default();
    }
    let sigma = match sigma_cap {
        Some(cap) if cap >= 0.0 => noise_sigma(&y[..n]).min(cap),
        _ => noise_sigma(&y[..n]),
    };
    let penalty = (2.0 * sigma * sigma * (n as f64).ln()).max(min_step * min_step);
    // Prefix sums of values shifted by their mean, so the cost keeps its precision.
    let mean = y[..n].iter().sum::<f64>() / n as f64;
    let mut s1 = vec![0.0; n + 1];
    let mut s2 = vec![0.0; n + 1];
    for i in 0..n {
        let v = y[i] - mean;
        s1[i + 1] = s1[i] + v;
        s2[i + 1] = s2[i] + v * v;
    }
    let cost = |a: usize, b: usize| {
        let len = (b - a) as f64;
        let sum = s1[b] - s1[a];
        (s2[b] - s2[a] - sum * sum / len).max(0.0)
    };
    let mut f = vec![0.0; n + 1];
    let mut prev = vec![0usize; n + 1];
    f[0] = -penalty;
    let mut candidates: Vec<usize> = vec![0];
    for end in 1..=n {
        let mut best = f64::INFINITY;
        let mut arg = 0;
        for &tau in &candidates {
            let v = f[tau] + cost(tau, end) + penalty;
            if v < best {
                best = v;
                arg = tau;
            }
        }
        f[end] = best;
        prev[end] = arg;
        candidates.retain(|&tau| f[tau] + cost(tau, end) <= best);
        candidates.push(end);
    }
    let mut cuts = vec![n];
    let mut k = n;
    while k > 0 {
        k = prev[k];
        cuts.push(k);
    }
    cuts.reverse();
    let half = width_s / 2.0;
    let regimes = cuts
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            let level = mean + (s1[b] - s1[a]) / (b - a) as f64;
            Regime {
                start_s: t[a] - half,
                end_s: t[b - 1] + half,
                from: a,
                to: b,
                level,
            }
        })
        .collect();
    Cpd {
        regimes,
        penalty,
        sigma,
    }
}

impl Cpd {
    /// The largest rise from one regime to the next, bytes (0 without a rise).
    pub fn largest_step_up(&self) -> f64 {
        self.regimes
            .windows(2)
            .map(|w| w[1].level - w[0].level)
            .fold(0.0, f64::max)
    }

    /// Number of rises from one regime to the next.
    pub fn steps_up(&self) -> usize {
        self.regimes
            .windows(2)
            .filter(|w| w[1].level > w[0].level)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(n: usize) -> Vec<f64> {
        (0..n).map(|i| i as f64 + 0.5).collect()
    }

    #[test]
    fn finds_a_single_step() {
        let y: Vec<f64> = (0..16)
            .map(|i| if i < 10 { 100.0 } else { 150.0 })
            .collect();
        let c = pelt(&times(16), &y, 1.0, 10.0, None);
        assert_eq!(c.regimes.len(), 2);
        assert_eq!((c.regimes[0].to, c.regimes[1].from), (10, 10));
        assert_eq!(c.regimes[1].level, 150.0);
        assert_eq!(c.regimes[1].start_s, 10.0);
        assert_eq!(c.regimes[1].end_s, 16.0);
        assert_eq!(c.largest_step_up(), 50.0);
        assert_eq!(c.sigma, 0.0);
        assert_eq!(c.penalty, 100.0);
    }

    #[test]
    fn steps_below_the_minimum_are_not_paid_for() {
        let y: Vec<f64> = (0..16).map(|i| if i < 8 { 100.0 } else { 102.0 }).collect();
        // Splitting saves 8*8/16 * 2^2 = 16 < 10^2.
        assert_eq!(pelt(&times(16), &y, 1.0, 10.0, None).regimes.len(), 1);
    }

    #[test]
    fn noise_alone_is_one_regime() {
        // Deterministic +-1 noise: sigma = 2 / (0.6745 sqrt 2) ~ 2.1, penalty 2 sigma^2 ln 32 ~ 30.
        let y: Vec<f64> = (0..32)
            .map(|i| 1000.0 + if (i * 7) % 3 == 0 { 1.0 } else { -1.0 })
            .collect();
        let c = pelt(&times(32), &y, 1.0, 0.0, None);
        assert_eq!(c.regimes.len(), 1, "{c:?}");
        assert!(c.sigma > 0.5 && c.sigma < 3.0, "{}", c.sigma);
    }

    #[test]
    fn a_noise_cap_lets_small_steps_through() {
        // Uneven steps of 10 and 40: the MAD of the differences alone says sigma ~ 7, and the
        // penalty 2 sigma^2 ln 8 ~ 220 swallows the steps of 10 (saving 4*4/8*100 = 200 each).
        let y = [0.0, 0.0, 10.0, 50.0, 50.0, 90.0, 100.0, 100.0];
        let c = pelt(&times(8), &y, 1.0, 1.0, None);
        let capped = pelt(&times(8), &y, 1.0, 1.0, Some(0.0));
        assert!(capped.regimes.len() > c.regimes.len(), "{c:?} {capped:?}");
        assert_eq!(capped.regimes.len(), 5);
        assert_eq!(capped.penalty, 1.0);
    }

    #[test]
    fn staircase_is_many_steps() {
        let y: Vec<f64> = (0..16).map(|i| 100.0 + 20.0 * (i / 4) as f64).collect();
        let c = pelt(&times(16), &y, 1.0, 10.0, None);
        assert_eq!(c.regimes.len(), 4);
        assert_eq!(c.steps_up(), 3);
        assert!(pelt(&[], &[], 1.0, 1.0, None).regimes.is_empty());
    }
}

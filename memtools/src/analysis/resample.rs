//! Stage 2: linear interpolation of each segment onto a uniform grid.
//!
//! A uniform grid weighs time evenly: a burst of 60 samples in a second must not outweigh a
//! minute sampled once, and LBR's "one more point" must mean "a bit further back in time".

use serde::{Deserialize, Serialize};

use crate::model::{NS_PER_SEC, TimeNs};

use super::gaps::median_interval;
use super::params::Params;

/// One segment on its uniform grid. Times are seconds since the run's first sample, so sums of
/// squares stay well inside f64 precision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    /// Grid times, seconds since the run's origin; uniform, first and last on real samples.
    pub t: Vec<f64>,
    /// Interpolated values, bytes.
    pub y: Vec<f64>,
    /// The grid step actually used, seconds (0 for a single point).
    pub step_s: f64,
}

impl Grid {
    /// Number of grid points.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Whether the grid has no point.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }
}

/// `numpy.interp(x, xp, fp)`: piecewise-linear through (xp, fp), constant beyond either end.
/// `xp` must be increasing; an empty `xp` gives NaN (numpy raises). Works for unsorted `x`, fastest
/// for sorted `x`.
pub fn interp(x: &[f64], xp: &[f64], fp: &[f64]) -> Vec<f64> {
    let n = xp.len().min(fp.len());
    if n == 0 {
        return vec![f64::NAN; x.len()];
    }
    let (xp, fp) = (&xp[..n], &fp[..n]);
    let mut j = 0; // xp[j] <= xi < xp[j + 1] for the current xi, when inside.
    x.iter()
        .map(|&xi| {
            if xi.is_nan() {
                return f64::NAN;
            }
            if xi <= xp[0] {
                return fp[0];
            }
            if xi >= xp[n - 1] {
                return fp[n - 1];
            }
            if !(xp[j] <= xi && xi < xp[j + 1]) {
                // Sorted x moves forward a step or two; anything else binary-searches.
                if xi >= xp[j + 1] && j + 2 < n && xi < xp[j + 2] {
                    j += 1;
                } else {
                    j = xp.partition_point(|&v| v <= xi) - 1;
                }
            }
            let (x0, x1, y0, y1) = (xp[j], xp[j + 1], fp[j], fp[j + 1]);
            let w = (xi - x0) / (x1 - x0);
            y0 + w * (y1 - y0)
        })
        .collect()
}

/// The grid step for a segment in seconds: the override, else the segment's median interval,
/// coarsened so the grid has at most `max_grid_points`.
pub fn grid_step_s(t: &[TimeNs], params: &Params) -> f64 {
    let span = seconds(super::gaps::span_ns(t));
    let step = match params.resample_step_s {
        Some(s) if s.is_finite() && s > 0.0 => s,
        _ => median_interval(t).map(seconds).unwrap_or(0.0),
    };
    let max_points = params.max_grid_points.max(2);
    step.max(span / (max_points - 1) as f64)
}

/// Resamples one segment (times in ns, strictly increasing) onto a uniform grid whose ends are
/// the segment's first and last samples; the step is shrunk slightly from `step_s` so it divides
/// the span exactly. Times are made relative to `origin`.
pub fn resample(t: &[TimeNs], y: &[f64], origin: TimeNs, step_s: f64) -> Grid {
    let n = t.len().min(y.len());
    if n == 0 {
        return Grid::default();
    }
    let xp: Vec<f64> = t[..n]
        .iter()
        .map(|&ti| seconds(ti.saturating_sub(origin)))
        .collect();
    let (a, b) = (xp[0], xp[n - 1]);
    let span = b - a;
    if n == 1 || span <= 0.0 || step_s.is_nan() || step_s <= 0.0 {
        return Grid {
            t: vec![b],
            y: vec![y[n - 1]],
            step_s: 0.0,
        };
    }
    // Bounded so a nonsensical step cannot allocate the world.
    let intervals = (span / step_s).ceil().clamp(1.0, 1e7) as usize;
    let step = span / intervals as f64;
    let mut x: Vec<f64> = (0..=intervals).map(|k| a + k as f64 * step).collect();
    x[intervals] = b;
    let fy = interp(&x, &xp, &y[..n]);
    Grid {
        t: x,
        y: fy,
        step_s: step,
    }
}

/// Nanoseconds to seconds.
pub fn seconds(ns: i64) -> f64 {
    ns as f64 / NS_PER_SEC as f64
}

/// Seconds since `origin` back to an absolute time in ns.
pub fn to_time_ns(origin: TimeNs, s: f64) -> TimeNs {
    origin.saturating_add(super::gaps::secs_to_ns(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interp_matches_numpy() {
        // numpy.interp([-1, 0, 0.5, 1, 1.5, 2.5, 3, 9], [0, 1, 3], [10, 20, 0])
        // -> [10, 10, 15, 20, 15, 5, 0, 0]
        let got = interp(
            &[-1.0, 0.0, 0.5, 1.0, 1.5, 2.5, 3.0, 9.0],
            &[0.0, 1.0, 3.0],
            &[10.0, 20.0, 0.0],
        );
        assert_eq!(got, vec![10.0, 10.0, 15.0, 20.0, 15.0, 5.0, 0.0, 0.0]);
        // Unsorted x gives the same values.
        let got = interp(&[2.5, 0.5, 1.5], &[0.0, 1.0, 3.0], &[10.0, 20.0, 0.0]);
        assert_eq!(got, vec![5.0, 15.0, 15.0]);
        // One point: constant.
        assert_eq!(interp(&[-5.0, 5.0], &[1.0], &[7.0]), vec![7.0, 7.0]);
        assert!(interp(&[1.0], &[], &[])[0].is_nan());
    }

    #[test]
    fn resample_hits_both_ends_on_a_uniform_grid() {
        let s = NS_PER_SEC;
        // Samples at 0, 1, 3, 3.5 s; values 0, 10, 30, 30. Step 1.2 s -> 3 intervals of 7/6 s.
        let t = [0, s, 3 * s, 7 * s / 2];
        let g = resample(&t, &[0.0, 10.0, 30.0, 30.0], 0, 1.2);
        assert_eq!(g.len(), 4);
        let h = 3.5 / 3.0;
        assert!((g.step_s - h).abs() < 1e-12);
        assert_eq!(g.t[0], 0.0);
        assert_eq!(g.t[3], 3.5);
        // y(7/6) = 10 + (1/6)/2 * 20; y(7/3) = 10 + (4/3)/2 * 20.
        assert!((g.y[1] - (10.0 + 20.0 / 12.0)).abs() < 1e-9);
        assert!((g.y[2] - (10.0 + 40.0 / 3.0)).abs() < 1e-9);
        assert_eq!(g.y[3], 30.0);
    }

    #[test]
    fn resample_relative_to_origin_and_degenerate_cases() {
        let s = NS_PER_SEC;
        let g = resample(&[10 * s, 12 * s], &[1.0, 3.0], 10 * s, 1.0);
        assert_eq!(g.t, vec![0.0, 1.0, 2.0]);
        assert_eq!(g.y, vec![1.0, 2.0, 3.0]);
        assert_eq!(resample(&[5 * s], &[4.0], 0, 1.0).t, vec![5.0]);
        assert!(resample(&[], &[], 0, 1.0).is_empty());
        assert_eq!(resample(&[0, s], &[1.0, 2.0], 0, 0.0).len(), 1);
    }

    #[test]
    fn grid_step_is_median_interval_capped_by_max_points() {
        let s = NS_PER_SEC;
        let t: Vec<i64> = (0..100).map(|i| i * s / 2).collect();
        assert_eq!(grid_step_s(&t, &Params::default()), 0.5);
        let p = Params {
            max_grid_points: 11,
            ..Params::default()
        };
        assert!((grid_step_s(&t, &p) - 4.95).abs() < 1e-12);
        let p = Params {
            resample_step_s: Some(2.0),
            ..Params::default()
        };
        assert_eq!(grid_step_s(&t, &p), 2.0);
    }
}

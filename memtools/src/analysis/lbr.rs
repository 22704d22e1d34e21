//! Stage 3: Linear Backward Regression.
//!
//! Windows end at the segment's last point and grow backwards one grid point at a time. The
//! five running sums make each window O(1), so a segment costs O(n), where memorytools refits
//! every window from scratch (O(n^2)).

use serde::{Deserialize, Serialize};

use super::params::Params;
use super::resample::Grid;

/// A least-squares line `y = slope * t + intercept` (t in seconds since the run's origin).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// Points in the fit.
    pub n: usize,
    /// Bytes per second.
    pub slope: f64,
    /// Bytes at t = 0 (the run's first sample).
    pub intercept: f64,
    /// Coefficient of determination; 0 for a perfectly flat window (no trend to explain).
    pub r2: f64,
}

impl Fit {
    /// The line's value at `t`.
    pub fn at(&self, t: f64) -> f64 {
        self.slope * t + self.intercept
    }
}

/// Two-pass least squares, the reference the running sums are tested against. `None` with fewer
/// than two distinct times.
pub fn fit_direct(t: &[f64], y: &[f64]) -> Option<Fit> {
    let n = t.len().min(y.len());
    if n < 2 {
        return None;
    }
    let mt = t[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (t[i] - mt, y[i] - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    finish(n, mt, my, sxx, sxy, syy)
}

fn finish(n: usize, mt: f64, my: f64, sxx: f64, sxy: f64, syy: f64) -> Option<Fit> {
    if !sxx.is_finite() || sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 {
        (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let fit = Fit {
        n,
        slope,
        intercept: my - slope * mt,
        r2,
    };
    (fit.slope.is_finite() && fit.intercept.is_finite()).then_some(fit)
}

/// Running sums over points shifted by a fixed origin `(t0, y0)`, which keeps the sums of squares
/// small (memory values are ~1e10 bytes, their squares would lose the variance).
#[derive(Clone, Copy, Debug)]
pub struct Sums {
    t0: f64,
    y0: f64,
    n: usize,
    st: f64,
    sy: f64,
    stt: f64,
    syy: f64,
    sty: f64,
}

impl Sums {
    /// Empty sums around an origin (use a point of the data, e.g. the window's end).
    pub fn new(t0: f64, y0: f64) -> Sums {
        Sums {
            t0,
            y0,
            n: 0,
            st: 0.0,
            sy: 0.0,
            stt: 0.0,
            syy: 0.0,
            sty: 0.0,
        }
    }

    /// Adds one point in O(1).
    pub fn add(&mut self, t: f64, y: f64) {
        let (x, v) = (t - self.t0, y - self.y0);
        self.n += 1;
        self.st += x;
        self.sy += v;
        self.stt += x * x;
        self.syy += v * v;
        self.sty += x * v;
    }

    /// The least-squares fit of the points added so far, in O(1).
    pub fn fit(&self) -> Option<Fit> {
        if self.n < 2 {
            return None;
        }
        let n = self.n as f64;
        let (mt, my) = (self.st / n, self.sy / n);
        let sxx = self.stt - self.st * mt;
        let sxy = self.sty - self.st * my;
        let syy = (self.syy - self.sy * my).max(0.0);
        let mut fit = finish(self.n, mt, my, sxx, sxy, syy)?;
        // Back from shifted coordinates: y - y0 = m (t - t0) + c'.
        fit.intercept = fit.intercept + self.y0 - fit.slope * self.t0;
        fit.intercept.is_finite().then_some(fit)
    }
}

/// One LBR window and what its line says.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LbrWindow {
    /// First grid time of the window (seconds since the run's origin).
    pub start_s: f64,
    /// Last grid time: the segment's end.
    pub end_s: f64,
    pub fit: Fit,
    /// Growth along the fitted line over the window, bytes.
    pub growth: f64,
    /// Seconds from the END of the window until the line reaches the limit; `None` when it never
    /// does (flat or falling).
    pub time_to_limit_s: Option<f64>,
}

/// The outcome of LBR on one segment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lbr {
    /// Some window fitted well and reaches the limit within the critical time.
    pub flagged: bool,
    /// The first flagged window, else the best-fitting rising window (for display), if any.
    pub window: Option<LbrWindow>,
    /// Windows evaluated.
    pub windows: usize,
}

/// Time to reach `limit` from the line's value at `t_end`: (limit - y_end) / m with
/// y_end = m t_end + c. memorytools computes (limit - c) / m with t in epoch seconds, an absolute
/// timestamp that always exceeds its 3600 s, so it flags any well-fitting window, rising or not.
pub fn time_to_limit(fit: &Fit, t_end: f64, limit: f64) -> Option<f64> {
    if fit.slope.is_nan() || fit.slope <= 0.0 {
        return None;
    }
    let y_end = fit.at(t_end);
    Some(((limit - y_end) / fit.slope).max(0.0))
}

/// Runs LBR over one segment's grid: the first window from the end with R^2 >= the threshold, a
/// rising line reaching the limit within the critical time, and at least the minimum growth.
/// Without a limit (a metric nothing bounds) no window is flagged.
/// `None` when the segment has fewer than `min_window` points.
pub fn lbr(grid: &Grid, params: &Params) -> Option<Lbr> {
    let n = grid.len();
    let min_window = params.min_window.max(3);
    if n < min_window {
        return None;
    }
    let (t, y) = (&grid.t, &grid.y);
    let t_end = t[n - 1];
    let limit = params.limit_bytes.map(|l| l as f64);
    let mut sums = Sums::new(t_end, y[n - 1]);
    let mut best: Option<LbrWindow> = None;
    let mut windows = 0;
    for i in (0..n).rev() {
        sums.add(t[i], y[i]);
        if n - i < min_window {
            continue;
        }
        windows += 1;
        let Some(fit) = sums.fit() else { continue };
        let ttl = limit.and_then(|l| time_to_limit(&fit, t_end, l));
        let window = LbrWindow {
            start_s: t[i],
            end_s: t_end,
            fit,
            growth: fit.slope * (t_end - t[i]),
            time_to_limit_s: ttl,
        };
        let rising = fit.slope > 0.0;
        // A well-fitting window that barely grew (a fraction of a second of a dense recording)
        // is no evidence; the minimum growth applies to LBR too.
        if rising
            && fit.r2 >= params.r2_threshold
            && ttl.is_some_and(|s| s <= params.critical_time_s)
            && window.growth >= params.min_growth_at(fit.at(t[i]))
        {
            return Some(Lbr {
                flagged: true,
                window: Some(window),
                windows,
            });
        }
        if rising && best.is_none_or(|b| fit.r2 >= b.fit.r2) {
            best = Some(window);
        }
    }
    Some(Lbr {
        flagged: false,
        window: best,
        windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(t: Vec<f64>, y: Vec<f64>) -> Grid {
        Grid {
            step_s: t.get(1).map_or(0.0, |b| b - t[0]),
            t,
            y,
        }
    }

    #[test]
    fn direct_fit_by_hand() {
        // t = 0,1,2,3; y = 1,3,2,5: mean t 1.5, mean y 2.75; Sxx 5, Sxy 5.5, Syy 8.75.
        let f = fit_direct(&[0.0, 1.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 5.0]).unwrap();
        assert!((f.slope - 1.1).abs() < 1e-12);
        assert!((f.intercept - (2.75 - 1.1 * 1.5)).abs() < 1e-12);
        assert!((f.r2 - 5.5 * 5.5 / (5.0 * 8.75)).abs() < 1e-12);
        assert!(fit_direct(&[1.0, 1.0], &[1.0, 2.0]).is_none());
        assert_eq!(fit_direct(&[0.0, 1.0], &[4.0, 4.0]).unwrap().r2, 0.0);
    }

    #[test]
    fn running_sums_match_direct_fit_on_large_values() {
        // 8 GB with a 1 MB wiggle: naive sums of squares would lose the wiggle entirely.
        let t: Vec<f64> = (0..500).map(|i| 1000.0 + i as f64 * 0.5).collect();
        let y: Vec<f64> = t
            .iter()
            .enumerate()
            .map(|(i, &ti)| 8e9 + 3e4 * ti + 1e6 * ((i * 7919 % 13) as f64 - 6.0))
            .collect();
        let mut sums = Sums::new(t[499], y[499]);
        for i in (0..500).rev() {
            sums.add(t[i], y[i]);
            if 499 - i >= 5 {
                let a = sums.fit().unwrap();
                let b = fit_direct(&t[i..], &y[i..]).unwrap();
                assert!((a.slope - b.slope).abs() <= 1e-6 * b.slope.abs().max(1.0));
                assert!((a.r2 - b.r2).abs() < 1e-9, "{} vs {}", a.r2, b.r2);
                assert!((a.at(t[499]) - b.at(t[499])).abs() < 1.0);
            }
        }
    }

    #[test]
    fn time_to_limit_counts_from_the_window_end() {
        // y = 1 GiB + 1 MiB/s * t over t in [1000, 2000]; limit 2 GiB.
        let mib = 1048576.0;
        let fit = Fit {
            n: 2,
            slope: mib,
            intercept: 1024.0 * mib,
            r2: 1.0,
        };
        // At t = 2000 the line is at 3024 MiB: already past the 2048 MiB limit.
        assert_eq!(time_to_limit(&fit, 2000.0, 2048.0 * mib), Some(0.0));
        // At t = 500 it is at 1524 MiB: 524 s to go.
        assert_eq!(time_to_limit(&fit, 500.0, 2048.0 * mib), Some(524.0));
        let falling = Fit { slope: -mib, ..fit };
        assert_eq!(time_to_limit(&falling, 0.0, 2048.0 * mib), None);
    }

    #[test]
    fn lbr_flags_fast_growth_and_stops_at_first_window() {
        let t: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let y: Vec<f64> = t.iter().map(|&x| 1e9 + 5e6 * x).collect();
        let p = Params::with_limit(4 << 30); // ~3.3 GB to go at 5 MB/s: ~660 s.
        let r = lbr(&grid(t.clone(), y.clone()), &p).unwrap();
        assert!(r.flagged);
        let w = r.window.unwrap();
        assert_eq!(w.fit.n, 20);
        assert_eq!(r.windows, 1);
        let ttl = w.time_to_limit_s.unwrap();
        let expected = ((4u64 << 30) as f64 - (1e9 + 5e6 * 99.0)) / 5e6;
        assert!((ttl - expected).abs() < 1e-3, "{ttl} vs {expected}");
        // Windows that grew less than the minimum growth are passed over: 5 MB/s needs 41 points
        // (40 s) to grow 200 MB.
        let p200 = Params {
            bytes: crate::analysis::Scale {
                min_growth: 200_000_000.0,
                min_growth_fraction: 0.0,
                ..crate::analysis::Scale::BYTES
            },
            ..p
        };
        let r = lbr(&grid(t.clone(), y.clone()), &p200).unwrap();
        assert_eq!(r.window.unwrap().fit.n, 41);
        // A limit 1 TB away is not within the hour.
        let r = lbr(&grid(t, y), &Params::with_limit(1 << 40)).unwrap();
        assert!(!r.flagged);
        assert_eq!(r.windows, 81);
        assert!(r.window.is_some());
    }

    #[test]
    fn lbr_never_flags_a_falling_series_unlike_memorytools() {
        let t: Vec<f64> = (0..100).map(|i| 1.7e9 + i as f64).collect(); // epoch seconds
        let y: Vec<f64> = (0..100).map(|i| 5e9 - 1e7 * i as f64).collect();
        let p = Params::with_limit(16 << 30);
        let r = lbr(&grid(t.clone(), y.clone()), &p).unwrap();
        assert!(!r.flagged);
        assert!(r.window.is_none());
        // memorytools' rule: r2 >= 0.8 and (limit - c) / m > 3600 on epoch seconds.
        let f = fit_direct(&t[80..], &y[80..]).unwrap();
        let memorytools_t_crit = ((16u64 << 30) as f64 - f.intercept) / f.slope;
        assert!(
            f.r2 >= 0.8 && memorytools_t_crit > 3600.0,
            "memorytools flags it"
        );
    }

    #[test]
    fn lbr_needs_min_window_points() {
        let g = grid((0..19).map(f64::from).collect(), vec![1.0; 19]);
        assert!(lbr(&g, &Params::default()).is_none());
    }
}

//! Stage 1: clean a raw history and cut it into segments at gaps.

use std::ops::Range;

use crate::model::{NS_PER_SEC, TimeNs};

use super::params::Params;

/// A history ready for analysis: times strictly increasing, values finite.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cleaned {
    pub t: Vec<TimeNs>,
    pub y: Vec<f64>,
    /// Trailing 0-byte samples removed: a process caught while exiting, not a release.
    pub trailing_zeros: usize,
    /// NaN or infinite values removed (nothing a recorder should produce, but never a panic).
    pub non_finite: usize,
    /// Samples merged into another at the same timestamp (their mean is kept).
    pub duplicates: usize,
}

/// Sorts by time, averages samples sharing a timestamp, drops non-finite values and trailing
/// zeros. Extra elements of the longer slice are ignored.
pub fn clean(times: &[TimeNs], values: &[f64]) -> Cleaned {
    let n = times.len().min(values.len());
    let mut out = Cleaned::default();
    let mut pairs: Vec<(TimeNs, f64)> = Vec::with_capacity(n);
    for (&t, &v) in times[..n].iter().zip(&values[..n]) {
        if v.is_finite() {
            pairs.push((t, v));
        } else {
            out.non_finite += 1;
        }
    }
    if !pairs.windows(2).all(|w| w[0].0 <= w[1].0) {
        // Stable, so equal timestamps keep their recorded order (irrelevant once averaged).
        pairs.sort_by_key(|p| p.0);
    }
    out.t.reserve(pairs.len());
    out.y.reserve(pairs.len());
    let mut i = 0;
    while i < pairs.len() {
        let t = pairs[i].0;
        let mut j = i;
        let mut sum = 0.0;
        while j < pairs.len() && pairs[j].0 == t {
            sum += pairs[j].1;
            j += 1;
        }
        let count = j - i;
        out.duplicates += count - 1;
        let mean = sum / count as f64;
        // Summing huge finite values can overflow to infinity; fall back to the last one.
        out.t.push(t);
        out.y.push(if mean.is_finite() {
            mean
        } else {
            pairs[j - 1].1
        });
        i = j;
    }
    while out.y.last() == Some(&0.0) {
        out.y.pop();
        out.t.pop();
        out.trailing_zeros += 1;
    }
    out
}

/// The median of the positive intervals between consecutive times, in ns (`None` below two
/// samples). Robust to the occasional pause, unlike the mean.
pub fn median_interval(t: &[TimeNs]) -> Option<i64> {
    let mut dts: Vec<i64> = t
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .filter(|&d| d > 0)
        .collect();
    if dts.is_empty() {
        return None;
    }
    let mid = dts.len() / 2;
    let (_, m, _) = dts.select_nth_unstable(mid);
    Some(*m)
}

/// The gap threshold in ns: the override, or max(gap_factor x median interval,
/// gap_min_fraction x span). memorytools' fixed 0.5 s cuts a 1 Hz recording into single points;
/// a threshold in the series' own units does not, and the span floor keeps a bursty recorder's
/// one-second pauses between bursts of 60 Hz samples from shattering the run.
pub fn gap_threshold_ns(t: &[TimeNs], params: &Params) -> Option<i64> {
    if let Some(s) = params.gap_threshold_s {
        return Some(secs_to_ns(s));
    }
    let median = median_interval(t)?;
    let span = span_ns(t);
    let by_interval = params.gap_factor * median as f64;
    let by_span = params.gap_min_fraction * span as f64;
    Some(secs_to_ns(by_interval.max(by_span) / NS_PER_SEC as f64))
}

/// Index ranges of the segments: a new one starts after every interval strictly longer than
/// `threshold_ns`. An interval equal to the threshold is not a gap.
pub fn split(t: &[TimeNs], threshold_ns: Option<i64>) -> Vec<Range<usize>> {
    if t.is_empty() {
        return Vec::new();
    }
    let Some(threshold) = threshold_ns else {
        return std::iter::once(0..t.len()).collect();
    };
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..t.len() {
        if t[i].saturating_sub(t[i - 1]) > threshold {
            out.push(start..i);
            start = i;
        }
    }
    out.push(start..t.len());
    out
}

/// Last minus first time, 0 when empty.
pub fn span_ns(t: &[TimeNs]) -> i64 {
    match (t.first(), t.last()) {
        (Some(a), Some(b)) => b.saturating_sub(*a),
        _ => 0,
    }
}

/// Seconds to ns, saturating (and NaN to 0) so a silly parameter cannot panic.
pub fn secs_to_ns(s: f64) -> i64 {
    let ns = s * NS_PER_SEC as f64;
    if ns.is_nan() {
        0
    } else {
        ns.clamp(i64::MIN as f64, i64::MAX as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = NS_PER_SEC;

    #[test]
    fn clean_sorts_merges_and_drops_trailing_zeros() {
        let t = [3 * S, S, 2 * S, 2 * S, 4 * S, 5 * S];
        let y = [30.0, 10.0, 20.0, 40.0, 0.0, 0.0];
        let c = clean(&t, &y);
        assert_eq!(c.t, vec![S, 2 * S, 3 * S]);
        assert_eq!(c.y, vec![10.0, 30.0, 30.0]);
        assert_eq!((c.trailing_zeros, c.duplicates, c.non_finite), (2, 1, 0));
    }

    #[test]
    fn clean_keeps_inner_zeros_and_drops_nan() {
        let c = clean(&[1, 2, 3, 4], &[5.0, 0.0, f64::NAN, 7.0]);
        assert_eq!(c.t, vec![1, 2, 4]);
        assert_eq!(c.y, vec![5.0, 0.0, 7.0]);
        assert_eq!(c.non_finite, 1);
        // All zeros: nothing left.
        assert!(clean(&[1, 2], &[0.0, 0.0]).t.is_empty());
        // Mismatched lengths: the extra times are ignored.
        assert_eq!(clean(&[1, 2, 3], &[1.0]).t, vec![1]);
    }

    #[test]
    fn median_interval_ignores_pauses() {
        let t = [0, S, 2 * S, 3 * S, 60 * S, 61 * S];
        assert_eq!(median_interval(&t), Some(S));
        assert_eq!(median_interval(&[5]), None);
    }

    #[test]
    fn split_cuts_strictly_above_threshold() {
        // Intervals: 1, 2, 1, 3 s; threshold 2 s: only the 3 s interval is a gap.
        let t = [0, S, 3 * S, 4 * S, 7 * S];
        assert_eq!(split(&t, Some(2 * S)), vec![0..4, 4..5]);
        // Just below the 2 s interval: it becomes a gap too.
        assert_eq!(split(&t, Some(2 * S - 1)), vec![0..2, 2..4, 4..5]);
        assert_eq!(split(&t, None), vec![0..5]);
        assert!(split(&[], Some(S)).is_empty());
        assert_eq!(split(&[7], Some(S)), vec![0..1]);
    }

    #[test]
    fn derived_threshold_keeps_1hz_together() {
        // 1 Hz for 100 s with one 30 s pause: median 1 s, threshold max(10 s, 2.6 s) = 10 s.
        let mut t: Vec<i64> = (0..50).map(|i| i * S).collect();
        t.extend((0..50).map(|i| (80 + i) * S));
        let p = Params::default();
        let th = gap_threshold_ns(&t, &p).unwrap();
        assert_eq!(th, 10 * S);
        let segs = split(&t, Some(th));
        assert_eq!(segs, vec![0..50, 50..100]);
        // memorytools' 0.5 s would leave single points.
        assert_eq!(split(&t, Some(S / 2)).len(), 100);
        // An override wins.
        let p = Params {
            gap_threshold_s: Some(40.0),
            ..Params::default()
        };
        assert_eq!(split(&t, gap_threshold_ns(&t, &p)).len(), 1);
    }

    #[test]
    fn derived_threshold_has_a_span_floor() {
        // 100 Hz bursts of 1 s separated by 1.5 s pauses for 200 s: the pauses are not gaps.
        let mut t = Vec::new();
        let mut now = 0;
        while now < 200 * S {
            for k in 0..100 {
                t.push(now + k * S / 100);
            }
            now += 5 * S / 2;
        }
        let th = gap_threshold_ns(&t, &Params::default()).unwrap();
        assert!(th > 3 * S, "{th}");
        assert_eq!(split(&t, Some(th)).len(), 1);
    }
}

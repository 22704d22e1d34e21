//! One process's history of the view's metric, kept bounded however long the session runs, with
//! the summary its sparkline is drawn from kept up to date as samples arrive.

use std::sync::Arc;

use memtools::model::TimeNs;

/// The most points kept per process. The analysis resamples a segment onto at most 10,000 grid
/// points (`Params::max_grid_points`), so a longer history would cost memory and time without
/// changing what it sees much; beyond this the history is thinned evenly (every other point).
pub const MAX_POINTS: usize = 10_000;

/// Cells of the sparkline summary: the whole history in between half and all of them.
pub const SPARK_BUCKETS: usize = 64;

/// A process's samples of one metric, as stored (change-only for eBPF sessions), bounded.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Shared with the analyser while it copies them; appending copies only then.
    points: Arc<Vec<(TimeNs, u64)>>,
    spark: Spark,
    /// The first value ever seen (kept through thinning, which keeps the first point anyway).
    first: Option<u64>,
    /// The last non-zero value: a trailing 0 is a process caught exiting, not its memory.
    last_live: Option<u64>,
    /// Points appended since the history began, thinning or not: how much it has changed.
    appended: u64,
}

impl History {
    /// An empty history whose sparkline starts with buckets of `step` (the sampling interval).
    pub fn new(step: i64) -> History {
        History {
            spark: Spark::new(step),
            ..History::default()
        }
    }

    /// Appends samples newer than the last one (older or equal times are ignored).
    pub fn extend(&mut self, new: impl IntoIterator<Item = (TimeNs, u64)>) {
        let mut new = new.into_iter().peekable();
        if new.peek().is_none() {
            // Nothing to add: no copy of points the analyser may be holding.
            return;
        }
        let last = self.points.last().map(|p| p.0);
        let points = Arc::make_mut(&mut self.points);
        let mut last = last;
        for (t, v) in new {
            if last.is_some_and(|l| t <= l) {
                continue;
            }
            last = Some(t);
            points.push((t, v));
            self.spark.push(t, v);
            self.first.get_or_insert(v);
            if v != 0 || self.last_live.is_none() {
                self.last_live = Some(v);
            }
            self.appended += 1;
        }
        while points.len() > MAX_POINTS {
            thin(points);
        }
    }

    /// The points, shared: cloning this is cheap, and the history copies its own only if it
    /// grows while a clone is alive.
    pub fn shared(&self) -> Arc<Vec<(TimeNs, u64)>> {
        Arc::clone(&self.points)
    }

    pub fn points(&self) -> &[(TimeNs, u64)] {
        &self.points
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The latest value (a trailing 0 skipped).
    pub fn current(&self) -> Option<u64> {
        self.last_live
    }

    /// Current minus first, as `show` computes growth.
    pub fn growth(&self) -> Option<i64> {
        Some(self.last_live? as i64 - self.first? as i64)
    }

    /// Points appended since the start: a counter that moves whenever the history does.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// The sparkline summary: the largest value of each time bucket, oldest first.
    pub fn spark(&self) -> &[u64] {
        &self.spark.buckets
    }

    /// The smallest value ever seen: the sparkline's floor, so a sawtooth shows as peaks high
    /// above it rather than as its peaks' small differences.
    pub fn low(&self) -> u64 {
        self.spark.low
    }

    /// At most `width` min/max pairs over the whole history, for a chart `width` cells wide:
    /// every peak and trough survives, however many points the history holds.
    pub fn downsampled(&self, width: usize) -> Vec<(TimeNs, u64)> {
        downsample(&self.points, width)
    }
}

/// Keeps the first, the last and every other point in between.
fn thin(points: &mut Vec<(TimeNs, u64)>) {
    let last = points.len() - 1;
    let mut i = 0;
    points.retain(|_| {
        let keep = i % 2 == 0 || i == last;
        i += 1;
        keep
    });
}

/// Min and max of each of `width` equal slices of `points`, in time order.
pub fn downsample(points: &[(TimeNs, u64)], width: usize) -> Vec<(TimeNs, u64)> {
    let width = width.max(1);
    if points.len() <= 2 * width {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(2 * width);
    let per = points.len().div_ceil(width);
    for chunk in points.chunks(per) {
        let lo = chunk.iter().min_by_key(|p| p.1);
        let hi = chunk.iter().max_by_key(|p| p.1);
        if let (Some(&lo), Some(&hi)) = (lo, hi) {
            if lo.0 <= hi.0 {
                out.extend([lo, hi]);
            } else {
                out.extend([hi, lo]);
            }
        }
    }
    out.dedup();
    out
}

/// The largest value per time bucket over the whole history: buckets double in length (pairs
/// merged) when the history outgrows them, so a sample costs O(1) and the summary stays small.
#[derive(Clone, Debug, Default)]
struct Spark {
    origin: Option<TimeNs>,
    /// Nanoseconds per bucket.
    span: i64,
    buckets: Vec<u64>,
    low: u64,
}

impl Spark {
    fn new(step: i64) -> Spark {
        Spark {
            origin: None,
            span: step.max(1),
            buckets: Vec::with_capacity(SPARK_BUCKETS),
            low: u64::MAX,
        }
    }

    fn push(&mut self, t: TimeNs, v: u64) {
        self.low = self.low.min(v);
        let origin = *self.origin.get_or_insert(t);
        let span = self.span.max(1);
        let mut index = ((t - origin).max(0) / span) as usize;
        while index >= SPARK_BUCKETS {
            self.merge_pairs();
            index = ((t - origin).max(0) / self.span) as usize;
        }
        if index < self.buckets.len() {
            let b = &mut self.buckets[index];
            *b = (*b).max(v);
            return;
        }
        // A bucket without samples (a pause) holds the value before it, as the history does.
        let held = self.buckets.last().copied().unwrap_or(v);
        while self.buckets.len() < index {
            self.buckets.push(held);
        }
        self.buckets.push(v);
    }

    fn merge_pairs(&mut self) {
        self.buckets = self
            .buckets
            .chunks(2)
            .map(|c| c.iter().copied().max().unwrap_or(0))
            .collect();
        self.span = self.span.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_and_current_skip_a_trailing_zero() {
        let mut h = History::new(10);
        h.extend([(0, 100), (10, 150), (20, 0)]);
        assert_eq!(h.current(), Some(150));
        assert_eq!(h.growth(), Some(50));
        // Older or repeated times are not appended twice.
        h.extend([(20, 7), (5, 7)]);
        assert_eq!(h.len(), 3);
        assert_eq!(h.appended(), 3);
    }

    #[test]
    fn a_long_history_is_thinned_evenly_and_keeps_its_ends() {
        let mut h = History::new(1);
        h.extend((0..MAX_POINTS as i64 + 1).map(|t| (t, t as u64)));
        assert!(h.len() <= MAX_POINTS / 2 + 2, "{}", h.len());
        assert_eq!(h.points()[0], (0, 0));
        assert_eq!(
            h.points().last(),
            Some(&(MAX_POINTS as i64, MAX_POINTS as u64))
        );
        assert_eq!(h.growth(), Some(MAX_POINTS as i64));
    }

    #[test]
    fn a_long_backlog_read_at_once_is_thinned_to_the_bound() {
        let mut h = History::new(1);
        h.extend((0..4 * MAX_POINTS as i64).map(|t| (t, 1)));
        assert!(h.len() <= MAX_POINTS, "{}", h.len());
        assert_eq!(h.appended(), 4 * MAX_POINTS as u64);
        // Nothing new: the points are not copied away from a clone.
        let shared = h.shared();
        h.extend(std::iter::empty());
        assert!(Arc::ptr_eq(&shared, &h.shared()));
    }

    #[test]
    fn the_sparkline_covers_the_whole_history_in_few_buckets() {
        let mut h = History::new(1);
        h.extend((0..1000).map(|t| (t, t as u64)));
        let s = h.spark();
        assert!(
            (SPARK_BUCKETS / 2..=SPARK_BUCKETS).contains(&s.len()),
            "{}",
            s.len()
        );
        // Rising history, rising summary; its last bucket holds the last value.
        assert!(s.windows(2).all(|w| w[0] <= w[1]), "{s:?}");
        assert_eq!(s.last(), Some(&999));
    }

    #[test]
    fn downsampling_keeps_peaks() {
        let mut points: Vec<(TimeNs, u64)> = (0..10_000).map(|t| (t, 5)).collect();
        points[4321].1 = 900;
        let d = downsample(&points, 100);
        assert!(d.len() <= 200);
        assert!(d.contains(&(4321, 900)));
    }
}

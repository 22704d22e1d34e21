//! One process's recent history of one metric, kept in bounded memory for the live analysis.
//!
//! The window slides: points older than its length are forgotten. It holds at most
//! [`MAX_POINTS`]: past that, it keeps one point per bucket of a coarser step (the last of each,
//! as a slower recorder would have sampled), doubling the step as often as needed. A process
//! followed for a day at 100 ms costs the same as one followed for a minute; the pipeline judges
//! a history the same at 10 ms and 5 s (its corpus checks that).

use std::collections::VecDeque;

use memtools::model::{History, TimeNs};

/// The most points a window holds: an hour at 5 s.
pub const MAX_POINTS: usize = 720;

/// A sliding, bounded history.
#[derive(Clone, Debug, Default)]
pub struct Window {
    points: VecDeque<(TimeNs, u64)>,
    /// Bucket width in ns; 0 while every point is kept.
    step: i64,
    /// Points were forgotten from its start: it no longer begins where the process began.
    cut: bool,
}

impl Window {
    /// Adds a point; points not after the last one are ignored.
    pub fn push(&mut self, t: TimeNs, v: u64) {
        if let Some(&(last, _)) = self.points.back() {
            if t <= last {
                return;
            }
            if self.step > 0 && last.div_euclid(self.step) == t.div_euclid(self.step) {
                // The same bucket: the newest value stands for it.
                if let Some(back) = self.points.back_mut() {
                    *back = (t, v);
                }
                return;
            }
        }
        self.points.push_back((t, v));
        if self.points.len() > MAX_POINTS {
            self.coarsen();
        }
    }

    /// Forgets the points before `t`.
    pub fn forget_before(&mut self, t: TimeNs) {
        while self.points.front().is_some_and(|p| p.0 < t) {
            self.points.pop_front();
            self.cut = true;
        }
    }

    /// Doubles the step (at least), keeping the last point of each bucket.
    fn coarsen(&mut self) {
        let (Some(&(first, _)), Some(&(last, _))) = (self.points.front(), self.points.back())
        else {
            return;
        };
        let spread = ((last - first) / (MAX_POINTS as i64 / 2)).max(1);
        self.step = (self.step * 2).max(spread);
        let step = self.step;
        let mut kept: VecDeque<(TimeNs, u64)> = VecDeque::with_capacity(MAX_POINTS + 1);
        for &(t, v) in &self.points {
            match kept.back_mut() {
                Some(back) if back.0.div_euclid(step) == t.div_euclid(step) => *back = (t, v),
                _ => kept.push_back((t, v)),
            }
        }
        self.points = kept;
    }

    /// The newest point.
    pub fn last(&self) -> Option<(TimeNs, u64)> {
        self.points.back().copied()
    }

    /// Whether points were forgotten from its start.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// How many points it holds.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether it holds no point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Its points, for the pipeline.
    pub fn history(&self) -> History {
        self.points.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn a_day_at_100ms_stays_bounded_and_keeps_its_shape() {
        let mut w = Window::default();
        // A line: 1 KiB per second for a day, sampled every 100 ms.
        let mut t = 0;
        while t < 86_400 * S {
            w.push(t, (t / S) as u64 * 1024);
            t += S / 10;
        }
        assert!(w.len() <= MAX_POINTS, "{} points", w.len());
        assert!(w.len() >= MAX_POINTS / 2, "{} points", w.len());
        let h = w.history();
        assert!(h.windows(2).all(|p| p[0].0 < p[1].0), "in time order");
        // Still the same line: the last point is the newest value, the slope unchanged.
        let (t0, v0) = h[0];
        let (t1, v1) = h[h.len() - 1];
        assert_eq!(v1, (t1 / S) as u64 * 1024);
        let slope = (v1 - v0) as f64 / ((t1 - t0) as f64 / S as f64);
        assert!((slope - 1024.0).abs() < 1.0, "{slope}");
        assert!(!w.is_cut());
    }

    #[test]
    fn the_window_slides_and_says_it_was_cut() {
        let mut w = Window::default();
        for i in 0..100 {
            w.push(i * S, i as u64);
        }
        // Out of order and duplicate points are ignored.
        w.push(50 * S, 0);
        w.push(99 * S, 0);
        assert_eq!(w.len(), 100);
        w.forget_before(90 * S);
        assert_eq!(w.len(), 10);
        assert!(w.is_cut());
        assert_eq!(w.history()[0], (90 * S, 90));
        assert_eq!(w.last(), Some((99 * S, 99)));
        w.forget_before(1000 * S);
        assert!(w.is_empty());
    }
}

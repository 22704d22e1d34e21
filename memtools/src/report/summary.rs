//! First, peak, last and growth of a process's history, as `show` and the GUI's table list them.

use serde::Serialize;

use crate::model::TimeNs;

/// The shape of one history in four numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HistorySummary {
    pub samples: usize,
    pub first_time: TimeNs,
    pub last_time: TimeNs,
    pub first: u64,
    pub peak: u64,
    pub last: u64,
    /// last - first, wide enough for any two u64 values.
    pub growth: i128,
}

impl HistorySummary {
    /// Summarises a time-ordered history. A trailing run of zeros is a process caught while
    /// exiting (its memory already torn down), not a release, so it is left out of `last`.
    pub fn of(points: &[(TimeNs, u64)]) -> Option<HistorySummary> {
        let live = points
            .iter()
            .rposition(|&(_, v)| v != 0)
            .map_or(points, |i| &points[..=i]);
        let (&(first_time, first), &(last_time, last)) = (live.first()?, live.last()?);
        let peak = live.iter().map(|&(_, v)| v).max().unwrap_or(0);
        Some(HistorySummary {
            samples: points.len(),
            first_time,
            last_time,
            first,
            peak,
            last,
            growth: i128::from(last) - i128::from(first),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_zero_is_an_exit_not_a_release() {
        let s = HistorySummary::of(&[(1, 100), (2, 300), (3, 250), (4, 0)]).unwrap();
        assert_eq!(
            (s.samples, s.first, s.peak, s.last, s.growth),
            (4, 100, 300, 250, 150)
        );
        assert_eq!(s.last_time, 3);
        assert_eq!(HistorySummary::of(&[]), None);
        let zeros = HistorySummary::of(&[(1, 0), (2, 0)]).unwrap();
        assert_eq!((zeros.first, zeros.last, zeros.growth), (0, 0, 0));
        // Beyond 2^63 bytes (a corrupt or hostile file): no wrap-around.
        let huge = HistorySummary::of(&[(1, 1), (2, u64::MAX)]).unwrap();
        assert_eq!(huge.growth, i128::from(u64::MAX) - 1);
        let fall = HistorySummary::of(&[(1, u64::MAX), (2, 1)]).unwrap();
        assert_eq!(fall.growth, 1 - i128::from(u64::MAX));
    }
}

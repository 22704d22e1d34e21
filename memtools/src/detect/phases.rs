//! Where a history grew, test by test, and where it tore down on its way out.

use serde::Serialize;

use crate::model::{TimeNs, Unit};
use crate::store::Phase;

/// How much a process grew during one phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseGrowth {
    pub name: String,
    /// In the metric's unit (a count for threads and descriptors).
    pub growth_bytes: f64,
}

/// "grew most during test_b (+40 MiB), test_c (+12 MiB)", or nothing without phases.
pub(super) fn phases_words(phases: &[PhaseGrowth], unit: Unit) -> Option<String> {
    if phases.is_empty() {
        return None;
    }
    let list: Vec<String> = phases
        .iter()
        .map(|p| {
            format!(
                "{} (+{})",
                p.name,
                crate::analysis::format::amount(p.growth_bytes, unit)
            )
        })
        .collect();
    Some(format!("grew most during {}", list.join(", ")))
}

/// How close to its exit a fall in memory counts as the process tearing down.
const TEARDOWN_NS: i64 = 1_000_000_000;

/// How many trailing samples are a process tearing itself down on its way out: those after
/// the last time, in the last second before its recorded exit, that it held the most memory of
/// that second, when memory fell after it. An interpreter freeing its heap at shutdown, or a
/// service dropping its caches as it stops, is an exit, not a release, as a trailing 0-byte
/// sample is; what it held flat before that (its last tests, say) is kept.
pub fn exit_teardown(points: &[(TimeNs, u64)], exit: Option<TimeNs>) -> usize {
    let Some(exit) = exit else { return 0 };
    let from = points.partition_point(|p| p.0 < exit - TEARDOWN_NS);
    let window = &points[from..];
    let Some(top) = window.iter().map(|p| p.1).max() else {
        return 0;
    };
    let Some(last_top) = window.iter().rposition(|p| p.1 == top) else {
        return 0;
    };
    let n = window.len() - 1 - last_top;
    // A flat tail is not a fall; nor is one sample.
    match window.last() {
        Some(&(_, end)) if n > 0 && end < top && window.len() > 1 => n,
        _ => 0,
    }
}

/// How many phases a leak is attributed to at most.
const TOP_PHASES: usize = 3;

/// The growth of a history within each phase (value at its end minus value at its start, each
/// the last sample at or before that time), the largest positive ones first.
pub fn growth_by_phase(points: &[(TimeNs, u64)], phases: &[Phase]) -> Vec<PhaseGrowth> {
    let at = |t: TimeNs| -> Option<f64> {
        let i = points.partition_point(|p| p.0 <= t);
        i.checked_sub(1).map(|i| points[i].1 as f64)
    };
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let mut out: Vec<PhaseGrowth> = phases
        .iter()
        .filter_map(|ph| {
            let end = ph.end.unwrap_or(last.0);
            if end < first.0 || ph.begin > last.0 {
                return None;
            }
            let before = at(ph.begin).unwrap_or(first.1 as f64);
            let growth = at(end)? - before;
            (growth > 0.0).then(|| PhaseGrowth {
                name: ph.name.clone(),
                growth_bytes: growth,
            })
        })
        .collect();
    out.sort_by(|a, b| b.growth_bytes.total_cmp(&a.growth_bytes));
    out.truncate(TOP_PHASES);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, begin: TimeNs, end: Option<TimeNs>) -> Phase {
        Phase {
            name: name.into(),
            begin,
            end,
        }
    }

    #[test]
    fn a_leak_is_attributed_to_the_phases_it_grew_in() {
        let points = [(0, 10), (10, 10), (20, 50), (30, 55), (40, 55), (50, 90)];
        let phases = [
            phase("warm-up", 0, Some(10)),
            phase("test_a", 10, Some(20)),
            phase("test_b", 25, Some(40)),
            phase("test_c", 40, None),
            phase("before", -20, Some(-10)),
        ];
        let g = growth_by_phase(&points, &phases);
        let names: Vec<_> = g
            .iter()
            .map(|p| (p.name.as_str(), p.growth_bytes))
            .collect();
        assert_eq!(
            names,
            vec![("test_a", 40.0), ("test_c", 35.0), ("test_b", 5.0)]
        );
        assert!(growth_by_phase(&[], &phases).is_empty());
    }

    #[test]
    fn a_fall_just_before_exit_is_teardown_not_release() {
        let s = 1_000_000_000;
        let pts = [
            (0, 10),
            (s, 20),
            (2 * s, 30),
            (2 * s + s / 2, 25),
            (2 * s + 3 * s / 4, 5),
        ];
        // Exit recorded right after the last sample: the last two are the process tearing down.
        assert_eq!(exit_teardown(&pts, Some(2 * s + 4 * s / 5)), 2);
        // Flat for the last second (its last tests), then a drop: only the drop is teardown.
        let flat = [(0, 10), (s / 4, 50), (s / 2, 50), (3 * s / 4, 50), (s, 5)];
        assert_eq!(exit_teardown(&flat, Some(s)), 1);
        // Still running, or exiting long after the fall: a release, left to the analysis.
        assert_eq!(exit_teardown(&pts, None), 0);
        assert_eq!(exit_teardown(&pts, Some(10 * s)), 0);
        // A flat tail before exit is not a fall.
        assert_eq!(exit_teardown(&[(0, 5), (s, 5), (2 * s, 5)], Some(2 * s)), 0);
        assert_eq!(exit_teardown(&[], Some(0)), 0);
    }
}

//! Judging a process across the tests it lived through: the memory it kept after each test.
//!
//! With phases (the pytest plugin, or any harness writing to `MEMTOOLS_PHASES`), a leak is
//! memory retained after test after test, as pytest-memray's leak check judges a call, but from
//! resident memory and for any language. The first test (and the collection before it) loads
//! code and fills caches: it is start-up, the level the rest is measured from. Timing does not
//! enter, so a cold page cache, a loaded machine or a coarse sampling interval that slow or blur
//! the start-up do not change the verdict.

use serde::{Deserialize, Serialize};

use crate::model::TimeNs;

use super::params::Params;

/// A unit of repeated work: one test, from its `begin` to its `end` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSpan {
    pub begin: TimeNs,
    pub end: TimeNs,
}

/// Fewest tests after the first with a measured level before phases decide: fewer cannot show
/// growth *across* tests, and the whole life's shape decides instead.
pub const MIN_TESTS: usize = 5;

/// What a process kept across the tests it lived through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// After each test: (the test's end, the memory kept: the lowest sample from then to the
    /// end of the tests, so what a later test gave back is not counted, and a level seen only
    /// in the middle of the next test's allocation does not count either). What the harness
    /// frees after its last test (pytest dropping its test modules at the end of the session)
    /// is not a release by the tests. The first is the start-up level.
    pub after: Vec<(TimeNs, f64)>,
    /// Memory kept per test on average over the tests after the first, bytes.
    pub per_test: f64,
    /// The last level minus the start-up level, bytes.
    pub growth: f64,
    /// Growth over the second half of the tests, bytes.
    pub late_growth: f64,
    /// The largest growth after one test, bytes.
    pub largest: f64,
    /// Tests after which the level rose by a meaningful share of the rest of the growth (a
    /// quarter of it spread evenly), so noise does not count.
    pub rises: usize,
}

impl Kept {
    /// Tests judged after start-up.
    pub fn tests(&self) -> usize {
        self.after.len().saturating_sub(1)
    }
}

/// The memory (or count) kept after each test the history spans (see [`Kept::after`]);
/// `resolution` is the smallest rise after a test that counts as keeping something. `None`
/// with fewer than [`MIN_TESTS`] tests after the first. `t` sorted, in ns.
pub fn kept(t: &[TimeNs], y: &[f64], phases: &[PhaseSpan], resolution: f64) -> Option<Kept> {
    let (first, last) = (*t.first()?, *t.last()?);
    let mut ends: Vec<TimeNs> = phases
        .iter()
        .map(|p| p.end)
        .filter(|&e| e >= first && e <= last)
        .collect();
    // Ends read in one look of the recorder share a time: each still counts as a test (the
    // memory kept after them is the same).
    ends.sort_unstable();
    if ends.len() < MIN_TESTS + 1 {
        return None;
    }
    // The tests end with the last one's end and a typical test's length after it.
    let mut lengths: Vec<i64> = phases
        .iter()
        .map(|p| p.end.saturating_sub(p.begin))
        .collect();
    lengths.sort_unstable();
    let typical = lengths.get(lengths.len() / 2).copied().unwrap_or(0);
    let horizon = ends[ends.len() - 1].saturating_add(typical);
    let kept_until = t.partition_point(|&x| x <= horizon);
    // The lowest value from each sample to the end of the tests.
    let mut floor_after = y[..kept_until].to_vec();
    for i in (0..floor_after.len().saturating_sub(1)).rev() {
        floor_after[i] = floor_after[i].min(floor_after[i + 1]);
    }
    let mut after: Vec<(TimeNs, f64)> = Vec::with_capacity(ends.len());
    for &end in &ends {
        let i = t.partition_point(|&x| x < end);
        if let Some(&v) = floor_after.get(i) {
            after.push((end, v));
        }
    }
    let n = after.len();
    let steps: Vec<f64> = after.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let growth = after[n - 1].1 - after[0].1;
    let mid = n / 2;
    let largest = steps.iter().copied().fold(0.0, f64::max);
    let meaningful = ((growth - largest) / (4 * (n - 1)) as f64).max(resolution);
    Some(Kept {
        per_test: growth / (n - 1) as f64,
        growth,
        late_growth: after[n - 1].1 - after[mid].1,
        largest,
        rises: steps.iter().filter(|&&d| d >= meaningful).count(),
        after,
    })
}

/// Why the tests show a leak, or why not.
pub enum Judgement {
    /// Kept memory after test after test, to the end.
    Leak,
    /// Kept nothing that lasts (or gave it back).
    NoGrowth,
    /// Kept memory over the first tests, then stopped: a cache filling to its size.
    Stopped,
    /// Grew after a few tests, not test after test (a lazy import, a cache built once).
    Few,
}

/// A leak needs the level kept after the tests to grow by the minimum growth, and still over
/// the second half of the tests, after test after test: without its largest single step (a
/// lazy import, one big test) the rest still makes the minimum growth and a third of the
/// whole, from at least four tests.
pub fn judge(k: &Kept, params: &Params) -> Judgement {
    let start = k.after[0].1;
    let need = params.min_growth_at(start);
    if k.growth < need {
        return Judgement::NoGrowth;
    }
    if k.late_growth < (need / 2.0).max(k.growth / 4.0) {
        return Judgement::Stopped;
    }
    let rest = k.growth - k.largest;
    if rest < need || rest * 3.0 < k.growth || k.rises < 4 {
        return Judgement::Few;
    }
    Judgement::Leak
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::MIB;

    const M: f64 = MIB as f64;
    const MS: TimeNs = 1_000_000;

    /// A pytest-like run: 2 s of start-up (imports), then `tests` tests of 100 ms sampled every
    /// 10 ms, each allocating `transient` for its length and keeping `kept`.
    fn run(
        tests: usize,
        transient: f64,
        kept_per_test: f64,
    ) -> (Vec<TimeNs>, Vec<f64>, Vec<PhaseSpan>) {
        let (mut t, mut y, mut phases) = (Vec::new(), Vec::new(), Vec::new());
        let mut level = 20.0 * M;
        for i in 0..200 {
            t.push(i * 10 * MS);
            level = 20.0 * M + 100.0 * M * (i as f64 / 200.0);
            y.push(level);
        }
        let mut now = 2000 * MS;
        for _ in 0..tests {
            phases.push(PhaseSpan {
                begin: now,
                end: now + 100 * MS,
            });
            for k in 0..10 {
                t.push(now + k * 10 * MS);
                y.push(level + if k > 0 { transient } else { 0.0 });
            }
            level += kept_per_test;
            now += 100 * MS;
        }
        t.push(now);
        y.push(level);
        (t, y, phases)
    }

    #[test]
    fn a_cache_keeping_memory_after_each_test_is_a_leak() {
        let (t, y, ph) = run(60, 10.0 * M, 3.0 * M);
        let k = kept(&t, &y, &ph, 4096.0).unwrap();
        assert_eq!(k.tests(), 59);
        assert!((k.per_test - 3.0 * M).abs() < 1.0, "{}", k.per_test);
        assert_eq!(k.rises, 59);
        // A test keeping much more once does not hide the others.
        let (t, mut y, ph) = run(60, 10.0 * M, 1.0 * M);
        let from = 200 + 50 * 10;
        for v in &mut y[from..] {
            *v += 40.0 * M;
        }
        let k = kept(&t, &y, &ph, 4096.0).unwrap();
        assert!(matches!(judge(&k, &Params::default()), Judgement::Leak));
        assert!(matches!(judge(&k, &Params::default()), Judgement::Leak));
    }

    #[test]
    fn a_buffer_released_after_each_test_is_not() {
        let (t, y, ph) = run(60, 500.0 * M, 0.0);
        let k = kept(&t, &y, &ph, 4096.0).unwrap();
        assert_eq!(k.growth, 0.0);
        assert!(matches!(judge(&k, &Params::default()), Judgement::NoGrowth));
    }

    #[test]
    fn a_cache_filling_to_its_size_stops() {
        let (t, mut y, ph) = run(60, 0.0, 3.0 * M);
        // Full after 20 tests: everything later stays at that level.
        let cap = y[200 + 20 * 10];
        for v in &mut y[200..] {
            *v = v.min(cap);
        }
        let k = kept(&t, &y, &ph, 4096.0).unwrap();
        assert!(matches!(judge(&k, &Params::default()), Judgement::Stopped));
    }

    #[test]
    fn one_test_keeping_memory_once_is_not_a_leak() {
        let (t, mut y, ph) = run(60, 10.0 * M, 0.0);
        // Test 40 imports a library for good: +30 MiB from then on.
        let from = 200 + 40 * 10;
        for v in &mut y[from..] {
            *v += 30.0 * M;
        }
        let k = kept(&t, &y, &ph, 4096.0).unwrap();
        assert_eq!(k.growth, 30.0 * M);
        assert!(matches!(judge(&k, &Params::default()), Judgement::Few));
    }

    #[test]
    fn too_few_tests_leave_it_to_the_shape() {
        let (t, y, ph) = run(5, 0.0, 3.0 * M);
        assert!(kept(&t, &y, &ph, 4096.0).is_none());
        assert!(kept(&t, &y, &[], 4096.0).is_none());
    }
}

//! The pipeline on counts (threads, file descriptors): the same rules as memory, in the count's
//! own units, so one more thread is a step and not noise, and five more are a leak where five
//! more bytes never are.
use super::*;
use crate::model::NS_PER_SEC;

const T0: TimeNs = 1_714_000_000 * NS_PER_SEC;

/// Parameters for a count, against `limit` (an RLIMIT_NOFILE, a thread limit).
fn counts(limit: Option<u64>) -> Params {
    Params {
        limit_bytes: limit,
        unit: Unit::Count,
        ..Params::default()
    }
}

/// One sample per second for `n` seconds of a count.
fn series(n: usize, f: impl Fn(f64) -> f64) -> (Vec<TimeNs>, Vec<f64>) {
    (0..n)
        .map(|i| (T0 + i as i64 * NS_PER_SEC, f(i as f64).round()))
        .unzip()
}

#[test]
fn descriptors_leaking_nine_a_second_are_said_as_the_issue_says() {
    let (t, y) = series(540, |x| 12.0 + 9.0 * x);
    let a = analyze(&t, &y, &counts(Some(8192)));
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    assert!(
        // The end is the floor of the last stretch of time, a little below the last sample.
        a.reason.starts_with("12 -> 4,7") && a.reason.contains(" over 8 min 59 s, +8.9/s"),
        "{}",
        a.reason
    );
    // Near its open-file limit: the time to reach it is said, as memory's is.
    assert!(
        a.reason
            .contains("; at this rate it reaches its limit of 8,192 in 6 min"),
        "{}",
        a.reason
    );
    let e = a.evidence.unwrap();
    assert_eq!(e.unit, Unit::Count);
    assert!(e.time_to_limit_s.unwrap() < 400.0);
}

#[test]
fn a_count_is_judged_in_its_own_units_not_in_bytes() {
    // 10 threads to 40 over 10 minutes, one every 20 s: a leak of threads...
    let (t, y) = series(600, |x| 10.0 + (x / 20.0).floor());
    let a = analyze(&t, &y, &counts(None));
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    assert!(a.reason.starts_with("10 -> 39 over "), "{}", a.reason);
    // ... which, read as bytes, is 29 bytes: nothing at all.
    let a = analyze(&t, &y, &Params::default());
    assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
}

#[test]
fn a_pool_that_grows_to_its_size_and_stays_is_not_a_leak() {
    // Workers started on demand up to 16 in the first 40 s, then the pool's size, with one
    // worker now and then retiring and coming back.
    let (t, y) = series(600, |x| {
        let size = (1.0 + x / 2.5).min(16.0);
        if x > 60.0 && (x as i64 * 7919) % 13 == 0 {
            size - 1.0
        } else {
            size
        }
    });
    let a = analyze(&t, &y, &counts(Some(32768)));
    assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
    assert!(
        a.reason.contains("a pool filling to its size") || a.reason.starts_with("no growth"),
        "{}",
        a.reason
    );
    // Descriptors opened and closed around each request: up and down by a few, no growth.
    let (t, y) = series(600, |x| 20.0 + ((x as i64 * 31) % 5) as f64);
    let a = analyze(&t, &y, &counts(Some(1024)));
    assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
    assert!(a.reason.starts_with("no growth"), "{}", a.reason);
}

/// 60 tests of 500 ms sampled every 50 ms; each opens `transient` descriptors for its length
/// and keeps `kept` after it; `pool` threads are started over the first tests, one per test.
fn tests_run(kept: f64, transient: f64, pool: f64) -> Analysis {
    let (mut t, mut y, mut phases) = (Vec::new(), Vec::new(), Vec::new());
    let mut level = 4.0;
    for k in 0..60i64 {
        let begin = T0 + k * NS_PER_SEC / 2;
        phases.push(PhaseSpan {
            begin,
            end: begin + NS_PER_SEC / 2 - 1,
        });
        for j in 0..10 {
            t.push(begin + j * 50_000_000);
            y.push(level + if j > 0 { transient } else { 0.0 });
        }
        level += kept + if (k as f64) < pool { 1.0 } else { 0.0 };
    }
    for j in 0..10 {
        t.push(T0 + 30 * NS_PER_SEC + j * 50_000_000);
        y.push(level);
    }
    let ctx = Context {
        from_start: true,
        exited: true,
        phases,
    };
    analyze_in(&t, &y, &ctx, &counts(Some(1024)))
}

#[test]
fn one_descriptor_kept_per_test_is_a_leak_and_a_pool_is_not() {
    let a = tests_run(1.0, 3.0, 0.0);
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    assert_eq!(a.evidence.unwrap().detector, Detector::Phases);
    assert!(
        a.reason
            .starts_with("kept 1 after each of 59 tests, 5 -> 64"),
        "{}",
        a.reason
    );
    // Opened and closed by every test: nothing kept.
    let a = tests_run(0.0, 3.0, 0.0);
    assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
    assert!(
        a.reason.starts_with("kept nothing that lasts"),
        "{}",
        a.reason
    );
    // A pool of 8 threads started by the first 8 tests, then the same 8: it stopped.
    let a = tests_run(0.0, 0.0, 8.0);
    assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
    assert!(
        a.reason
            .contains("then stopped: a pool filling to its size"),
        "{}",
        a.reason
    );
}

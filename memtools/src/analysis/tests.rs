//! The pipeline end to end on small histories: what each rule of the verdict decides.
use super::*;
use crate::model::NS_PER_SEC;

const T0: TimeNs = 1_714_000_000 * NS_PER_SEC;
const MIB_F: f64 = MIB as f64;

/// One sample per second for `n` seconds.
fn series(n: usize, f: impl Fn(f64) -> f64) -> (Vec<TimeNs>, Vec<f64>) {
    (0..n)
        .map(|i| (T0 + i as i64 * NS_PER_SEC, f(i as f64)))
        .unzip()
}

fn run(n: usize, f: impl Fn(f64) -> f64) -> Analysis {
    let (t, y) = series(n, f);
    analyze(&t, &y, &Params::with_limit(16 * GIB))
}

#[test]
fn fast_leak_is_lbr_and_the_evidence_is_the_whole_growth() {
    // 1 GiB + 10 MiB/s for 600 s: ends at 1024 + 5990 MiB, 16384 MiB limit.
    let a = run(600, |x| GIB as f64 + 10.0 * MIB_F * x);
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    let e = a.evidence.unwrap();
    assert_eq!(e.detector, Detector::Lbr);
    // The whole life, not the LBR window that first qualified.
    assert_eq!((e.window_start, e.window_end), (T0, T0 + 599 * NS_PER_SEC));
    assert!(
        (e.slope_bytes_per_s - 10.0 * MIB_F).abs() < 0.2 * MIB_F,
        "{e:?}"
    );
    assert!(
        a.reason
            .starts_with("grew 5.8 GiB over 9 min 59 s, 1.0 -> 6.8 GiB, at 9.8 MiB/s"),
        "{}",
        a.reason
    );
    assert!(
        a.reason.ends_with("reaches the 16 GiB limit in 16 min"),
        "{}",
        a.reason
    );
    // The LBR window is kept, with its own projection from its end.
    let l = e.lbr.unwrap();
    assert!(l.flagged);
    assert_eq!(l.end, T0 + 599 * NS_PER_SEC);
    assert!((l.slope_bytes_per_s - 10.0 * MIB_F).abs() < 1.0);
    let expected = (16384.0 - 1024.0 - 5990.0) / 10.0;
    assert!((l.time_to_limit_s.unwrap() - expected).abs() < 1e-3);
    assert_eq!(a.peak_bytes, GIB as f64 + 10.0 * MIB_F * 599.0);
    let json = serde_json::to_value(a.summary()).unwrap();
    assert_eq!(json["verdict"], "leak");
    assert_eq!(json["evidence"]["detector"], "lbr");
    assert_eq!(json["evidence"]["lbr"]["flagged"], true);
}

#[test]
fn without_a_limit_no_time_to_limit_is_claimed() {
    let (t, y) = series(600, |x| 31.0 * GIB as f64 + 10.0 * MIB_F * x);
    let p = Params {
        limit_bytes: None,
        ..Params::default()
    };
    let a = analyze(&t, &y, &p);
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    assert!(!a.reason.contains("limit"), "{}", a.reason);
    assert_eq!(a.evidence.unwrap().time_to_limit_s, None);
}

#[test]
fn a_staircase_with_a_flat_end_and_a_teardown_is_a_leak() {
    // 3 GiB, +64 MiB every 4.5 s for 5.5 min, flat for 30 s, then torn down in 0.2 s.
    let mut t = Vec::new();
    let mut y = Vec::new();
    for i in 0..3600 {
        let x = i as f64 * 0.1;
        t.push(T0 + (x * 1e9) as i64);
        y.push(3.0 * GIB as f64 + 64.0 * MIB_F * (x.min(330.0) / 4.5).floor());
    }
    for k in 1..=2 {
        t.push(T0 + 360 * NS_PER_SEC + k * 100_000_000);
        y.push(GIB as f64);
    }
    let a = analyze(&t, &y, &Params::with_limit(24 * GIB));
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    assert_eq!(a.teardown, 2);
    let e = a.evidence.unwrap();
    assert_eq!(e.steps.map(|s| s.count), Some(73), "{}", a.reason);
    assert!(
        a.reason
            .starts_with("grew 4.6 GiB over 6 min, 3.0 -> 7.6 GiB, in 73 steps of 64 MiB"),
        "{}",
        a.reason
    );
    // Seen from its start to its exit, the staircase is still repeated work: a leak.
    let ctx = Context {
        from_start: true,
        exited: true,
        phases: Vec::new(),
    };
    let a = analyze_in(&t, &y, &ctx, &Params::with_limit(24 * GIB));
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
}

#[test]
fn one_ramp_to_exit_is_its_peak_and_a_short_life_is_too_short() {
    // 20 s at 100 ms, a worker filling a buffer to 4 GiB and exiting.
    let (t, y): (Vec<TimeNs>, Vec<f64>) = (0..200)
        .map(|i| (T0 + i * 100_000_000, 10.0 * MIB_F + i as f64 * 20.5 * MIB_F))
        .unzip();
    let whole = Context {
        from_start: true,
        exited: true,
        phases: Vec::new(),
    };
    let a = analyze_in(&t, &y, &whole, &Params::with_limit(24 * GIB));
    assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
    assert!(
        a.reason
            .starts_with("grew to 4 GiB in 20 s and exited: its peak, not a leak"),
        "{}",
        a.reason
    );
    // Not known to be its whole life: 20 s is too short to tell a leak from loading.
    let a = analyze(&t, &y, &Params::with_limit(24 * GIB));
    assert_eq!(a.verdict, Verdict::Insufficient, "{}", a.reason);
    assert!(
        a.reason
            .starts_with("20 s of life, all of it start-up: too short"),
        "{}",
        a.reason
    );
}

#[test]
fn phases_decide_from_the_memory_kept_after_each_test() {
    // 60 tests of 1 s at 100 ms; each allocates 200 MiB for its length; `kept` stays.
    let run = |kept: f64| {
        let (mut t, mut y, mut phases) = (Vec::new(), Vec::new(), Vec::new());
        let mut level = 100.0 * MIB_F;
        for k in 0..60i64 {
            let begin = T0 + k * NS_PER_SEC;
            phases.push(PhaseSpan {
                begin,
                end: begin + NS_PER_SEC - 1,
            });
            for j in 0..10 {
                t.push(begin + j * 100_000_000);
                y.push(level + if j > 0 { 200.0 * MIB_F } else { 0.0 });
            }
            level += kept;
        }
        // A second of reporting after the last test.
        for j in 0..10 {
            t.push(T0 + 60 * NS_PER_SEC + j * 100_000_000);
            y.push(level);
        }
        let ctx = Context {
            from_start: true,
            exited: true,
            phases,
        };
        analyze_in(&t, &y, &ctx, &Params::with_limit(24 * GIB))
    };
    let a = run(3.0 * MIB_F);
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    assert_eq!(a.evidence.unwrap().detector, Detector::Phases);
    // The first test is start-up: measured from what it left, 103 MiB.
    assert_eq!(
        a.reason,
        "kept 3 MiB after each of 59 tests, 103 -> 280 MiB; at this rate it reaches the \
         24 GiB limit in 2 h 14 min"
    );
    let a = run(0.0);
    assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
    assert!(
        a.reason
            .starts_with("kept nothing that lasts across 59 tests"),
        "{}",
        a.reason
    );
}

#[test]
fn slow_leak_is_caught_by_the_envelope_when_lbr_is_blind() {
    // 100 KiB/s on 500 MiB: the limit is days away, LBR cannot flag it.
    let a = run(1200, |x| 500.0 * MIB_F + 100.0 * 1024.0 * x);
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    assert_eq!(a.evidence.unwrap().detector, Detector::Envelope);
    assert!(!a.overlay.votes.lbr && a.overlay.votes.envelope);
}

#[test]
fn flat_and_falling_are_ok_unlike_memorytools() {
    let a = run(600, |_| 300.0 * MIB_F);
    assert_eq!(a.verdict, Verdict::Ok);
    assert!(a.reason.starts_with("no growth"), "{}", a.reason);
    // A clean fall (R^2 = 1) that memorytools' epoch-timestamp comparison flags.
    let a = run(600, |x| 4.0 * GIB as f64 - 1e6 * x);
    assert_eq!(a.verdict, Verdict::Ok, "{}", a.reason);
}

#[test]
fn trailing_zeros_are_an_exit_not_a_release() {
    let (mut t, mut y) = series(600, |x| GIB as f64 + 10.0 * MIB_F * x);
    t.push(T0 + 600 * NS_PER_SEC);
    y.push(0.0);
    let a = analyze(&t, &y, &Params::with_limit(16 * GIB));
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
    assert_eq!((a.trailing_zeros, a.samples), (1, 600));
}

#[test]
fn release_step_and_plateau_are_ok() {
    let release = run(600, |x| {
        200.0 * MIB_F + if x < 540.0 { 0.2 * MIB_F * x } else { 0.0 }
    });
    assert_eq!(release.verdict, Verdict::Ok);
    assert!(
        release.reason.starts_with("gave it back"),
        "{}",
        release.reason
    );
    // A step late in the run: most pairs of blocks do not straddle it, so the robust
    // growth is nil.
    let step = run(600, |x| {
        200.0 * MIB_F + if x < 540.0 { 0.0 } else { 50.0 * MIB_F }
    });
    assert_eq!(step.verdict, Verdict::Ok, "{}", step.reason);
    // Steps in the middle of the second half with a little noise: change points see one
    // step between flat levels.
    let step = run(600, |x| {
        let wiggle = if (x as i64 * 7919) % 5 == 0 { 0.3 } else { 0.0 };
        200.0 * MIB_F + if x < 460.0 { 0.0 } else { 50.0 * MIB_F } + wiggle * MIB_F
    });
    assert_eq!(step.verdict, Verdict::Ok, "{}", step.reason);
    let ramp = run(600, |x| 200.0 * MIB_F + 0.5 * MIB_F * x.min(420.0));
    assert_eq!(ramp.verdict, Verdict::Ok);
    assert!(
        ramp.reason.starts_with("grew 210 MiB in its first 7 min"),
        "{}",
        ramp.reason
    );
}

#[test]
fn too_little_data_is_insufficient_and_says_why() {
    let a = analyze(&[], &[], &Params::default());
    assert_eq!(
        (a.verdict, a.reason.as_str()),
        (Verdict::Insufficient, "no samples")
    );
    let a = run(19, |x| x * MIB_F);
    assert_eq!(a.verdict, Verdict::Insufficient);
    assert_eq!(a.reason, "only 19 samples; at least 20 are needed");
    assert!(a.evidence.is_none());
    // Zeros only: a process seen while exiting.
    let a = run(30, |_| 0.0);
    assert_eq!(a.reason, "no samples before the process exited");
    // Plenty of samples, all at the same instant.
    let t = vec![T0; 50];
    let a = analyze(&t, &[1.0; 50], &Params::default());
    assert_eq!(a.verdict, Verdict::Insufficient);
}

#[test]
fn one_hertz_with_gaps_stays_in_long_segments() {
    // 1 Hz leak with two 30 s pauses: three segments, not hundreds of single points.
    let (t, y): (Vec<TimeNs>, Vec<f64>) = (0..900)
        .filter(|i| !(200..230).contains(i) && !(500..530).contains(i))
        .map(|i| (T0 + i * NS_PER_SEC, GIB as f64 + 0.5 * MIB_F * i as f64))
        .unzip();
    let a = analyze(&t, &y, &Params::with_limit(16 * GIB));
    assert_eq!(a.overlay.segments.len(), 3);
    assert_eq!(a.overlay.gap_threshold_s, Some(17.98)); // 2 % of 899 s
    assert_eq!(a.verdict, Verdict::Leak, "{}", a.reason);
}

//! Invariants of the analysis pipeline, checked on generated inputs.

use memtools::analysis::lbr::{Sums, fit_direct, lbr};
use memtools::analysis::resample::Grid;
use memtools::analysis::{self, Params, Verdict};
use memtools::model::{NS_PER_SEC, TimeNs};
use proptest::prelude::*;

/// Any history: times anywhere in i64 (unsorted, repeated), values from 0 to huge.
fn any_history() -> impl Strategy<Value = (Vec<TimeNs>, Vec<f64>)> {
    let time = prop_oneof![
        any::<i64>(),
        0i64..1_000,
        (0i64..100_000).prop_map(|x| 1_714_000_000 * NS_PER_SEC + x * (NS_PER_SEC / 100)),
    ];
    let value = prop_oneof![
        Just(0.0),
        (0u64..1 << 40).prop_map(|v| v as f64),
        any::<u64>().prop_map(|v| v as f64),
        (0u32..4).prop_map(|k| [f64::MAX, 1e300, 1e18, -1e18][k as usize]),
    ];
    prop::collection::vec((time, value), 0..300).prop_map(|v| v.into_iter().unzip())
}

/// A plausible recording: increasing times at a jittered interval, values around a level.
fn recording() -> impl Strategy<Value = (Vec<TimeNs>, Vec<f64>)> {
    (
        20usize..600,
        1u64..4_000_000_000,
        0.0f64..1e10,
        -1e7f64..1e7,
        0.0f64..1e8,
        any::<u64>(),
    )
        .prop_map(|(n, dt, base, slope, noise, seed)| {
            let mut x = seed;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            };
            let mut t = Vec::with_capacity(n);
            let mut y = Vec::with_capacity(n);
            let mut now = 1_714_000_000 * NS_PER_SEC;
            for i in 0..n {
                now += (dt as f64 * (1.0 + 0.5 * next())) as i64 + 1;
                t.push(now);
                let secs = i as f64 * dt as f64 / 1e9;
                y.push((base + slope * secs + noise * next()).max(0.0).round());
            }
            (t, y)
        })
}

fn odd_params() -> impl Strategy<Value = Params> {
    (
        0usize..40,
        prop::option::of(prop_oneof![Just(0.0), 1e-9f64..1e4, Just(f64::NAN)]),
        prop::option::of(prop_oneof![Just(0.0), 1e-6f64..1e4, Just(-1.0)]),
        0u64..1 << 45,
    )
        .prop_map(|(min_window, gap, step, limit)| Params {
            min_window,
            gap_threshold_s: gap,
            resample_step_s: step,
            limit_bytes: Some(limit),
            max_grid_points: 2_000,
            ..Params::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_any_history((t, y) in any_history(), params in odd_params()) {
        let a = analysis::analyze(&t, &y, &params);
        // The verdict always comes with a reason, and evidence unless insufficient.
        prop_assert!(!a.reason.is_empty());
        prop_assert_eq!(a.evidence.is_none(), a.verdict == Verdict::Insufficient);
        // Serialisable for the JSON report and the GUI.
        prop_assert!(serde_json::to_string(&a).is_ok());
    }

    #[test]
    fn never_panics_on_recordings((t, y) in recording(), params in odd_params()) {
        let a = analysis::analyze(&t, &y, &params);
        prop_assert!(!a.reason.is_empty());
    }

    #[test]
    fn input_order_and_trailing_zeros_do_not_matter((t, y) in recording(), rot in 0usize..600) {
        let p = Params::default();
        let a = analysis::analyze(&t, &y, &p);
        // Rotated and reversed: the same history.
        let k = rot % t.len();
        let mut t2: Vec<TimeNs> = t[k..].iter().chain(&t[..k]).copied().collect();
        let mut y2: Vec<f64> = y[k..].iter().chain(&y[..k]).copied().collect();
        t2.reverse();
        y2.reverse();
        let b = analysis::analyze(&t2, &y2, &p);
        prop_assert_eq!(&a, &b);
        // A process caught exiting: 0 bytes after the last sample.
        let mut t3 = t.clone();
        let mut y3 = y.clone();
        let last = *t3.last().unwrap();
        t3.extend([last + NS_PER_SEC, last + 2 * NS_PER_SEC]);
        y3.extend([0.0, 0.0]);
        let c = analysis::analyze(&t3, &y3, &p);
        if y.last() != Some(&0.0) {
            prop_assert_eq!(c.verdict, a.verdict);
            prop_assert_eq!(c.trailing_zeros, 2 + a.trailing_zeros);
        }
    }

    #[test]
    fn too_few_samples_is_insufficient((t, y) in recording(), keep in 0usize..20) {
        let n = keep.min(t.len());
        let a = analysis::analyze(&t[..n], &y[..n], &Params::default());
        prop_assert_eq!(a.verdict, Verdict::Insufficient);
    }

    #[test]
    fn running_sums_agree_with_a_direct_fit(
        n in 3usize..400,
        t0 in 0.0f64..2e9,
        dt in 1e-3f64..100.0,
        base in 0.0f64..1e12,
        slope in -1e9f64..1e9,
        noise in 0.0f64..1e9,
        seed in any::<u64>(),
    ) {
        let mut x = seed | 1;
        let t: Vec<f64> = (0..n).map(|i| t0 + i as f64 * dt).collect();
        let y: Vec<f64> = t.iter().map(|&ti| {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            base + slope * (ti - t0) + noise * ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        }).collect();
        let mut sums = Sums::new(t[n - 1], y[n - 1]);
        for i in (0..n).rev() {
            sums.add(t[i], y[i]);
            if n - i < 3 {
                continue;
            }
            let (a, b) = (sums.fit(), fit_direct(&t[i..], &y[i..]));
            prop_assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                let scale = y[i..].iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let span = t[n - 1] - t[i];
                prop_assert!((a.slope - b.slope).abs() * span <= 1e-6 * scale, "{a:?} {b:?}");
                prop_assert!((a.at(t[n - 1]) - b.at(t[n - 1])).abs() <= 1e-6 * scale, "{a:?} {b:?}");
                prop_assert!((a.r2 - b.r2).abs() <= 1e-6, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn lbr_window_is_the_direct_fit_of_its_points(
        n in 20usize..300,
        slope in 0.0f64..1e8,
        noise in 0.0f64..1e8,
        seed in any::<u64>(),
    ) {
        let mut x = seed | 1;
        let t: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        let y: Vec<f64> = t.iter().map(|&ti| {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            4e9 + slope * ti + noise * ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        }).collect();
        let grid = Grid { t: t.clone(), y: y.clone(), step_s: 0.5 };
        let r = lbr(&grid, &Params::with_limit(8 << 30)).unwrap();
        if let Some(w) = r.window {
            let from = t.iter().position(|&v| v == w.start_s).unwrap();
            let d = fit_direct(&t[from..], &y[from..]).unwrap();
            prop_assert_eq!(w.fit.n, n - from);
            prop_assert!((w.fit.slope - d.slope).abs() <= 1e-6 * d.slope.abs().max(1.0));
            prop_assert!((w.fit.r2 - d.r2).abs() <= 1e-9);
            if r.flagged {
                prop_assert!(w.fit.r2 >= 0.9 && w.fit.slope > 0.0);
                prop_assert!(w.time_to_limit_s.unwrap() <= 3600.0);
            }
        }
    }
}

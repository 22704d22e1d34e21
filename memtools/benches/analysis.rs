//! How fast the analysis is, and how much faster than memorytools' approach.
//!
//! `cargo bench -p memtools-user --bench analysis` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a quick run). Groups:
//! - `detect`: 500 processes x 7,200 samples (an hour at 0.5 s: 3.6 million samples),
//!   single-threaded and split over two threads, and ~10 million samples (1,389 processes x
//!   7,200);
//! - `whole-lives`: 3.6 million samples as a test suite's recording gives them: 500 processes
//!   recorded from their start to their exit, each living through 60 tests (phases), half of
//!   them keeping memory after each test; and one process of 3.6 million samples (10 hours at
//!   10 ms);
//! - `scaling`: one process, 1,000 to 256,000 samples: time per sample stays flat (O(n));
//! - `memorytools`: LBR refitting every window from scratch (O(n^2), memorytools'
//!   `detect_leaks_linear_backward_regression`) against our O(n) LBR and full pipeline on the
//!   same 10 processes of 7,200 samples; multiply by 50 for the 500-process hour.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use memtools::analysis::lbr::{fit_direct, lbr};
use memtools::analysis::resample::Grid;
use memtools::analysis::{Context, GIB, MIB, Params, PhaseSpan, Verdict, analyze, analyze_in};
use memtools::model::{NS_PER_SEC, TimeNs};

type History = (Vec<TimeNs>, Vec<f64>);

/// xorshift64*: deterministic data without a rand dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A mix of shapes a CI machine records: mostly flat processes, some noisy, some leaking, some
/// garbage-collected, some warming up, sampled every 0.5 s with jitter.
fn history(seed: u64, n: usize) -> History {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let kind = (r.unit() * 10.0) as u32;
    shaped(r, n, kind)
}

/// Kinds 0-3 flat, 4-5 noisy, 6 linear leak, 7 sawtooth with a rising floor, 8 staircase,
/// 9 warm-up then plateau.
fn shaped(mut r: Rng, n: usize, kind: u32) -> History {
    let base = (50.0 + 2000.0 * r.unit()) * MIB as f64;
    let start: TimeNs = 1_714_000_000 * NS_PER_SEC;
    let mut t = Vec::with_capacity(n);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let x = i as f64 / n as f64;
        let noise = (r.unit() - 0.5) * base * 0.01;
        let v = match kind {
            0..=3 => base,
            4 | 5 => base + noise,
            6 => base * (1.0 + 0.3 * x) + noise,
            7 => base * (1.0 + 0.1 * x + 0.2 * (x * 60.0).fract()),
            8 => base * (1.0 + 0.02 * (x * 20.0).floor()),
            _ => base * (1.0 + 0.5 * (1.0 - (-20.0 * x).exp())) + noise,
        };
        t.push(start + i as i64 * NS_PER_SEC / 2 + (r.unit() * 1e7) as i64);
        y.push(v.round());
    }
    (t, y)
}

fn corpus(processes: usize, n: usize) -> Vec<History> {
    (0..processes as u64).map(|p| history(p, n)).collect()
}

fn detect_all(data: &[History], params: &Params) -> usize {
    data.iter()
        .filter(|(t, y)| analyze(t, y, params).verdict == Verdict::Leak)
        .count()
}

fn detect_two_threads(data: &[History], params: &Params) -> usize {
    let (a, b) = data.split_at(data.len() / 2);
    std::thread::scope(|s| {
        let h = s.spawn(|| detect_all(a, params));
        detect_all(b, params) + h.join().unwrap_or(0)
    })
}

fn bench_detect(c: &mut Criterion) {
    let params = Params::with_limit(16 * GIB);
    let mut g = c.benchmark_group("detect");
    g.sample_size(10);
    let hour = corpus(500, 7_200);
    g.throughput(Throughput::Elements(500 * 7_200));
    g.bench_function("500x7200", |b| {
        b.iter(|| detect_all(black_box(&hour), &params))
    });
    g.bench_function("500x7200/2-threads", |b| {
        b.iter(|| detect_two_threads(black_box(&hour), &params))
    });
    drop(hour);
    let big = corpus(1_389, 7_200);
    g.throughput(Throughput::Elements(1_389 * 7_200));
    g.bench_function("10M", |b| b.iter(|| detect_all(black_box(&big), &params)));
    g.finish();
}

/// Whole lives through 60 tests each (an hour at 0.5 s per process), every other one keeping
/// memory after each test; the context each is analysed in.
fn suite_lives(processes: usize, n: usize) -> Vec<(History, Context)> {
    (0..processes as u64)
        .map(|p| {
            let (t, mut y) = history(p, n);
            let keeps = p % 2 == 0;
            let test_len = (t[n - 1] - t[0]) / 61;
            let phases: Vec<PhaseSpan> = (0..60)
                .map(|k| PhaseSpan {
                    begin: t[0] + (k + 1) * test_len,
                    end: t[0] + (k + 2) * test_len,
                })
                .collect();
            if keeps {
                for (i, v) in y.iter_mut().enumerate() {
                    *v += ((i * 61 / n) as f64) * 2.0 * MIB as f64;
                }
            }
            let ctx = Context {
                from_start: true,
                exited: true,
                phases,
            };
            ((t, y), ctx)
        })
        .collect()
}

fn bench_whole_lives(c: &mut Criterion) {
    let params = Params::with_limit(16 * GIB);
    let mut g = c.benchmark_group("whole-lives");
    g.sample_size(10);
    let lives = suite_lives(500, 7_200);
    g.throughput(Throughput::Elements(500 * 7_200));
    g.bench_function("500x7200-with-60-tests", |b| {
        b.iter(|| {
            lives
                .iter()
                .filter(|((t, y), ctx)| {
                    analyze_in(black_box(t), y, ctx, &params).verdict == Verdict::Leak
                })
                .count()
        })
    });
    drop(lives);
    // One process sampled every 10 ms for 10 hours, in bursts of work with a staircase leak.
    let n = 3_600_000;
    let (t, y) = shaped(Rng(7), n, 8);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("one-process-3.6M", |b| {
        b.iter(|| analyze(black_box(&t), black_box(&y), &params))
    });
    g.finish();
}

fn bench_scaling(c: &mut Criterion) {
    let params = Params::with_limit(16 * GIB);
    let mut g = c.benchmark_group("scaling");
    g.sample_size(20);
    for n in [1_000usize, 4_000, 16_000, 64_000, 256_000] {
        // A leak with noise: the full pipeline runs, no early exit.
        let (t, y) = shaped(Rng(42), n, 6);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| analyze(black_box(&t), black_box(&y), &params))
        });
    }
    g.finish();
}

/// memorytools' `detect_leaks_linear_backward_regression`: for every window size from 4 to n,
/// refit the last `size` points from scratch (scipy's linregress: two passes), flag when
/// R^2 >= 0.8 and (limit - c) / m > 3600 with t in days since the epoch (matplotlib's date2num).
/// It does not stop at the first flag.
fn memorytools_lbr(t_days: &[f64], y: &[f64], limit: f64) -> bool {
    let n = t_days.len();
    let mut flagged = false;
    for size in 4..=n {
        let Some(f) = fit_direct(&t_days[n - size..], &y[n - size..]) else {
            continue;
        };
        let t_crit = if f.slope == 0.0 {
            f64::INFINITY
        } else {
            (limit - f.intercept) / f.slope
        };
        if f.r2 >= 0.8 && t_crit > 3600.0 {
            flagged = true;
        }
    }
    flagged
}

fn bench_memorytools(c: &mut Criterion) {
    let params = Params::with_limit(16 * GIB);
    let limit = (16 * GIB) as f64;
    let data = corpus(10, 7_200);
    let days: Vec<Vec<f64>> = data
        .iter()
        .map(|(t, _)| t.iter().map(|&ns| ns as f64 / 1e9 / 86_400.0).collect())
        .collect();
    let grids: Vec<Grid> = data
        .iter()
        .map(|(t, y)| Grid {
            t: t.iter().map(|&ns| (ns - t[0]) as f64 / 1e9).collect(),
            y: y.clone(),
            step_s: 0.5,
        })
        .collect();
    let mut g = c.benchmark_group("memorytools");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10 * 7_200));
    g.bench_function("lbr-refit-every-window/10x7200", |b| {
        b.iter(|| {
            days.iter()
                .zip(&data)
                .filter(|(d, (_, y))| memorytools_lbr(black_box(d), y, limit))
                .count()
        })
    });
    g.bench_function("lbr-running-sums/10x7200", |b| {
        b.iter(|| {
            grids
                .iter()
                .filter(|gr| lbr(black_box(gr), &params).is_some_and(|l| l.flagged))
                .count()
        })
    });
    g.bench_function("full-pipeline/10x7200", |b| {
        b.iter(|| detect_all(black_box(&data), &params))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_detect, bench_whole_lives, bench_scaling, bench_memorytools
}
criterion_main!(benches);

//! rust-suite: a test harness written in Rust, running its tests in one process as `cargo test`
//! does with one thread, and marking each as a phase with the README's `phase` helper. Its
//! shapes are the ones issue 12 names, for memtools' end-to-end tests:
//!
//! - `imports`: loads 200 MiB of tables before its first test (start-up), then 20 quick tests;
//! - `worker`: one test starts a worker process (this program, `--worker`) that builds a
//!   300 MiB buffer, holds it a moment and exits; quick tests around it;
//! - `cache`: a module-level cache keeps 3 MiB after each of 60 tests (a leak);
//! - `released`: each of 60 tests builds a 100 MiB buffer and drops it.
//!
//! Usage: `rust-suite SHAPE` or `rust-suite --worker`. Outside memtools the phases go nowhere.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

const MIB: usize = 1 << 20;

/// The README's helper: one line per event on the FIFO memtools passes in `MEMTOOLS_PHASES`.
fn phase(verb: &str, name: &str) {
    if let Some(path) = std::env::var_os("MEMTOOLS_PHASES")
        && let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path)
    {
        let _ = writeln!(f, "{verb} {name}"); // one write(2): lines never interleave
    }
}

/// A buffer whose every page is written, so it is resident.
fn touched(bytes: usize) -> Vec<u8> {
    vec![1u8; bytes]
}

/// The module-level cache of the `cache` shape.
static CACHE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn run(name: &str, body: impl FnOnce()) {
    phase("begin", name);
    body();
    phase("end", name);
}

fn quick() {
    std::thread::sleep(Duration::from_millis(20));
}

fn main() -> ExitCode {
    let arg = std::env::args().nth(1).unwrap_or_default();
    match arg.as_str() {
        "--worker" => {
            // Built in 10 MiB pieces over about half a second: one ramp, then it exits.
            let mut buffer = Vec::new();
            for _ in 0..30 {
                buffer.push(touched(10 * MIB));
                std::thread::sleep(Duration::from_millis(15));
            }
            std::thread::sleep(Duration::from_millis(300));
            drop(buffer);
        }
        "imports" => {
            // Loading: tables of uneven sizes, before any test runs.
            let tables: Vec<Vec<u8>> = [60, 10, 45, 5, 80]
                .iter()
                .map(|&m| {
                    std::thread::sleep(Duration::from_millis(40));
                    touched(m * MIB)
                })
                .collect();
            for i in 0..20 {
                run(&format!("quick_{i}"), quick);
            }
            drop(tables);
        }
        "worker" => {
            for i in 0..5 {
                run(&format!("quick_{i}"), quick);
            }
            run("starts_a_worker", || {
                let exe = std::env::current_exe().expect("own path");
                let status = std::process::Command::new(exe)
                    .arg("--worker")
                    .status()
                    .expect("worker runs");
                assert!(status.success());
            });
            for i in 5..10 {
                run(&format!("quick_{i}"), quick);
            }
        }
        "cache" => {
            for i in 0..60 {
                run(&format!("cached_{i}"), || {
                    if let Ok(mut c) = CACHE.lock() {
                        c.push(touched(3 * MIB));
                    }
                    quick();
                });
            }
        }
        "released" => {
            for i in 0..60 {
                run(&format!("big_buffer_{i}"), || {
                    let b = touched(100 * MIB);
                    assert_eq!(b[MIB], 1);
                    // Released before the test's end, as a test's teardown would: the level a
                    // test leaves is then in its own window even when a loaded machine stamps
                    // its end a few milliseconds late (the next test's buffer builds at once).
                    drop(b);
                    quick();
                });
            }
        }
        other => {
            eprintln!("rust-suite: unknown shape {other:?} (imports, worker, cache, released)");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

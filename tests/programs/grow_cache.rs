//! The growth-sites end-to-end test's Rust program (tests/tests/sites.rs): each step is a test
//! (memtools phases) that leaks 1 MiB in grow_cache while churn allocates and frees memory it
//! reuses.
use std::io::Write;

#[inline(never)]
fn grow_cache(kept: &mut Vec<Vec<u8>>) {
    let block = vec![1u8; 64 * 1024];
    kept.push(std::hint::black_box(block));
}

#[inline(never)]
fn churn(sink: &mut u64) {
    for i in 0..8 {
        let block = std::hint::black_box(vec![2u8; 4 * 1024]);
        *sink += u64::from(block[i]);
    }
}

fn phase(what: &str, step: usize) {
    if let Some(path) = std::env::var_os("MEMTOOLS_PHASES")
        && let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path)
    {
        let _ = writeln!(f, "{what} test_{step}");
    }
}

fn main() {
    let mut kept = Vec::new();
    let mut sink = 0;
    for step in 0..24 {
        phase("begin", step);
        for _ in 0..16 {
            grow_cache(&mut kept);
        }
        for _ in 0..25 {
            churn(&mut sink);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        phase("end", step);
    }
    println!("{} {sink}", kept.len());
}

//! The benchmarks' own workloads and timer, run as `cargo xtask bench __NAME` by the
//! benchmarks (not for direct use). Each prints one line `TIMING <wall s> <cpu s>` on stdout,
//! so a run is timed the same way whoever starts it (no recorder, a recorder, heaptrack,
//! bpftrace).

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The fault-heavy workload of `bench faults`: this much anonymous memory, faulted in page by
/// page...
pub const FAULT_BYTES: usize = 4 << 30;
/// ... in chunks of this size, each faulted twice, the second time timed (see [`touch`]).
pub const FAULT_CHUNK: usize = 256 << 20;

/// The TIMING line of a worker's output: (wall seconds, CPU seconds).
pub fn parse_timing(output: &str) -> Result<(f64, f64)> {
    let line = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("TIMING "))
        .with_context(|| format!("no TIMING line in `{}`", output.trim()))?;
    let mut figures = line.split_whitespace().map(str::parse::<f64>);
    match (figures.next(), figures.next()) {
        (Some(Ok(wall)), Some(Ok(cpu))) => Ok((wall, cpu)),
        _ => bail!("a malformed TIMING line: `{line}`"),
    }
}

fn print_timing(wall: f64, cpu: f64) {
    println!("TIMING {wall:.6} {cpu:.6}");
}

/// CPU seconds the calling thread has used.
fn thread_cpu() -> f64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime fills it in.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// `__timed CMD ARGS...`: runs the command and prints its wall time and the CPU time of it and
/// every descendant it waited for (`wait4`'s rusage), its output thrown away.
pub fn timed(args: &[String]) -> Result<()> {
    let (program, rest) = args.split_first().context("__timed needs a command")?;
    let start = Instant::now();
    let child = std::process::Command::new(program)
        .args(rest)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage point to live locals.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4 failed for {program}");
    }
    let wall = start.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{program} failed (status {status})");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    print_timing(wall, secs(usage.ru_utime) + secs(usage.ru_stime));
    Ok(())
}

/// `__malloc [N] [--per M]`: N malloc and free pairs of 64 bytes through the C library's
/// allocator (what heaptrack and uprobe tracing hook), timed; with `--per M`, the time is
/// given for M pairs at the same rate (for a tracer too slow to run M of them).
pub fn malloc(args: &[String]) -> Result<()> {
    let count =
        |a: &String| -> Result<u64> { a.parse().with_context(|| format!("`{a}` is not a count")) };
    let n = args
        .first()
        .map(count)
        .transpose()?
        .unwrap_or(20_000_000)
        .max(1);
    let per = match args.get(1..) {
        Some([flag, m]) if flag == "--per" => count(m)?,
        Some([]) | None => n,
        Some(other) => bail!("__malloc: unexpected {other:?}"),
    };
    let layout = std::alloc::Layout::from_size_align(64, 8).context("layout")?;
    let (start, cpu) = (Instant::now(), thread_cpu());
    for _ in 0..n {
        // SAFETY: a valid non-zero layout; the block is freed with the same layout at once.
        unsafe {
            let p = black_box(std::alloc::System.alloc(layout));
            if p.is_null() {
                bail!("malloc failed");
            }
            std::alloc::System.dealloc(p, layout);
        }
    }
    let scale = per as f64 / n as f64;
    print_timing(
        start.elapsed().as_secs_f64() * scale,
        (thread_cpu() - cpu) * scale,
    );
    Ok(())
}

use std::alloc::GlobalAlloc as _;

/// `__touch [GIB] [--no-wait]`: waits for a line on stdin (so a recorder can attach to it
/// first; not with `--no-wait`), then faults GIB GiB (default 4) of anonymous memory in one
/// 4 KiB page at a time (no transparent huge pages: one fault per page), and prints the wall
/// and CPU seconds those faults took.
///
/// The memory is faulted in chunks, each touched once untimed, released with MADV_DONTNEED and
/// touched again timed: in a VM whose host takes back free guest memory (free page reporting,
/// as on this project's CI machines) a first touch of a page also pays the host's fault, which
/// varies by microseconds per page from run to run and would drown what a recorder adds. The
/// timed pass gets pages the guest has just freed, so it measures the guest's own fault path,
/// which is where the eBPF programs run.
pub fn touch(args: &[String]) -> Result<()> {
    let gib: usize = match args.first().filter(|a| !a.starts_with("--")) {
        Some(a) => a
            .parse()
            .with_context(|| format!("`{a}` is not a size in GiB"))?,
        None => FAULT_BYTES >> 30,
    };
    if !args.iter().any(|a| a == "--no-wait") {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
    }
    // SAFETY: a fresh private anonymous mapping; checked for failure below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            FAULT_CHUNK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        bail!(
            "mmap of {FAULT_CHUNK} bytes failed: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: the mapping above, whole.
    unsafe { libc::madvise(ptr, FAULT_CHUNK, libc::MADV_NOHUGEPAGE) };
    let base = ptr.cast::<u8>();
    let touch = || {
        for offset in (0..FAULT_CHUNK).step_by(4096) {
            // SAFETY: inside the mapping; volatile so the writes are not optimised away.
            unsafe { base.add(offset).write_volatile(1) };
        }
    };
    let release = || {
        // SAFETY: the mapping above, whole; its pages are dropped, the mapping stays.
        if unsafe { libc::madvise(ptr, FAULT_CHUNK, libc::MADV_DONTNEED) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    let (mut wall, mut cpu) = (0.0, 0.0);
    for _ in 0..(gib << 30) / FAULT_CHUNK {
        touch();
        release()?;
        let (w, c) = (Instant::now(), thread_cpu());
        touch();
        cpu += thread_cpu() - c;
        wall += w.elapsed().as_secs_f64();
        release()?;
    }
    print_timing(wall, cpu);
    Ok(())
}

//! leak-sim: a real process whose resident memory follows a chosen shape (linear leak,
//! staircase, sawtooth, spike, flat, process tree, churn, pid reuse), or whose threads or open
//! descriptors do (leaked, or a fixed pool), for memtools' end-to-end tests to record and
//! judge. `leak-sim --help` lists shapes and options.

#[path = "leak_sim/counts.rs"]
mod counts;
#[path = "leak_sim/mem.rs"]
mod mem;
#[path = "leak_sim/opts.rs"]
mod opts;
#[path = "leak_sim/procs.rs"]
mod procs;
#[path = "leak_sim/shapes.rs"]
mod shapes;

use anyhow::{Context, Result};
use opts::{Command, Opts, Shape};
use std::{io, process::ExitCode, time::Duration};

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("leak-sim: {e:#}");
            if e.downcast_ref::<procs::ReuseFailed>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn run() -> Result<u8> {
    let o = match opts::parse_args(std::env::args_os().skip(1))? {
        Command::Help => {
            print!("{}", opts::USAGE);
            return Ok(0);
        }
        Command::Run(o) => o,
    };
    arm_watchdog(&o)?;
    if let Some(path) = &o.pid_file {
        mem::write_pid_file(path)?;
    }
    let held = match o.shape {
        Shape::Linear => shapes::linear(&o)?,
        Shape::Steps => shapes::steps(&o)?,
        Shape::Sawtooth => shapes::sawtooth(&o)?,
        Shape::Spike => shapes::spike(&o)?,
        Shape::Flat => shapes::flat(&o)?,
        Shape::Serve => shapes::serve(&o)?,
        // The children hold (and --hold) the memory; the parent only waits for them.
        Shape::Tree => {
            procs::tree(&o)?;
            return Ok(o.exit_code);
        }
        Shape::Churn => {
            procs::churn(&o)?;
            Vec::new()
        }
        Shape::Reuse => {
            procs::reuse(&o)?;
            Vec::new()
        }
        Shape::Threads | Shape::Fds => {
            let held = counts::run(&o)?;
            mem::sleep(o.hold);
            drop(held);
            return Ok(o.exit_code);
        }
    };
    mem::sleep(o.hold);
    // Never freed, as a leak never is: the kernel takes it all back at exit at once, so the
    // last sample a recorder reads is the top (freeing it here took long enough under load
    // for a recorder to read a half-freed or emptied heap as the process's last state).
    std::mem::forget(held);
    Ok(o.exit_code)
}

/// The safety net: SIGALRM (default action: terminate) at --duration + --hold + 5 s, so a test
/// that dies mid-way leaves no simulator behind. SIGALRM and SIGTERM are reset to their default
/// actions and unblocked first, since dispositions and masks are inherited from whoever started
/// us (a harness may ignore or block them).
fn arm_watchdog(o: &Opts) -> Result<()> {
    for sig in [libc::SIGALRM, libc::SIGTERM] {
        // SAFETY: installing the default action has no preconditions.
        if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error()).context("resetting signal actions");
        }
    }
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error()).context("unblocking SIGALRM and SIGTERM");
    }
    let limit = o
        .duration
        .saturating_add(o.hold)
        .saturating_add(Duration::from_secs(5));
    let secs = u32::try_from(
        limit
            .as_secs()
            .saturating_add(u64::from(limit.subsec_nanos() > 0)),
    )
    .unwrap_or(u32::MAX);
    // SAFETY: alarm has no preconditions; it returns the previous alarm, not an error.
    unsafe { libc::alarm(secs) };
    Ok(())
}

//! The multi-process shapes: process trees, short-lived churn and pid reuse. Children re-execute
//! this binary with ordinary shape options, so every child is a shape a test can also run alone.

use crate::mem::{mark_ready, run_ticks, sleep};
use crate::opts::{Opts, Shape};
use anyhow::{Context, Result, bail};
use std::{
    fmt, fs,
    os::unix::fs::FileExt,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// Reuse could not do its job (not root, or the pid never came back): exit status 2, so a test
/// can skip rather than fail.
#[derive(Debug)]
pub struct ReuseFailed(pub String);

impl fmt::Display for ReuseFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReuseFailed {}

/// Children still running: killed and reaped if we leave early (an error), so no stray outlives
/// its parent even before PR_SET_PDEATHSIG would act.
#[derive(Default)]
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // Errors mean it is already gone; std never signals a child it has reaped.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Kids {
    /// Waits for every child, then fails naming the ones that failed.
    fn wait_all(mut self) -> Result<()> {
        let mut failed = Vec::new();
        let total = self.0.len();
        for child in &mut self.0 {
            let status = child.wait().context("waiting for a child")?;
            if !status.success() {
                failed.push(format!("pid {} {}", child.id(), describe(status)));
            }
        }
        if !failed.is_empty() {
            bail!(
                "{} of {total} children failed: {}",
                failed.len(),
                failed.join(", ")
            );
        }
        Ok(())
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended with {status}"),
    }
}

/// A command re-executing this binary with `opts`, which dies with us (SIGKILL on our exit).
fn child_command(opts: &Opts) -> Result<Command> {
    let exe = std::env::current_exe().context("finding this executable to re-execute it")?;
    let mut cmd = Command::new(exe);
    cmd.args(opts.to_args()).stdin(Stdio::null());
    if let Some(ready) = &opts.ready_file {
        cmd.arg("--ready-file").arg(ready);
    }
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls,
    // building its error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nothing would ever kill us.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    Ok(cmd)
}

fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.spawn()
        .with_context(|| format!("spawning {:?}", cmd.get_program()))
}

/// `--children` children running `--child-shape` (or, when `--depth` is above 1, trees one
/// level shallower). The ready file appears once every leaf's memory is touched; each child
/// gets its own `READY.child-I` next to it, removed once seen.
pub fn tree(o: &Opts) -> Result<()> {
    let mut child = o.clone();
    if o.depth > 1 {
        child.depth -= 1;
    } else {
        child.shape = o.child_shape;
    }
    let mut kids = Kids::default();
    let mut pending = Vec::new();
    for i in 0..o.children {
        child.ready_file = o.ready_file.as_ref().map(|r| {
            let mut path = r.as_os_str().to_owned();
            path.push(format!(".child-{i}"));
            PathBuf::from(path)
        });
        if let Some(path) = &child.ready_file {
            // A stale one from a killed run would read as ready at once.
            match fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("removing stale {}", path.display()));
                }
                _ => {}
            }
        }
        kids.0.push(spawn(&mut child_command(&child)?)?);
        if let Some(path) = &child.ready_file {
            pending.push((kids.0.len() - 1, path.clone()));
        }
    }
    if o.ready_file.is_some() {
        while !pending.is_empty() {
            let mut still = Vec::new();
            for (i, path) in pending {
                if path.exists() {
                    fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                } else if let Some(status) = kids.0[i].try_wait().context("polling a child")? {
                    if !status.success() {
                        bail!(
                            "child pid {} {} before it was ready",
                            kids.0[i].id(),
                            describe(status)
                        );
                    }
                } else {
                    still.push((i, path));
                }
            }
            pending = still;
            sleep(Duration::from_millis(2));
        }
        mark_ready(o)?;
    }
    kids.wait_all()
}

/// Every tick a child that holds `--step` for `--child-life`, then exits: many short-lived
/// processes for the recorder to catch and tell apart. The first child creates the ready file.
pub fn churn(o: &Opts) -> Result<()> {
    let mut child = o.clone();
    child.shape = Shape::Flat;
    child.base = o.step;
    child.duration = o.child_life();
    child.hold = Duration::ZERO;
    let ready_file = child.ready_file.take();
    let mut kids = Kids::default();
    let mut failed = Vec::new();
    // The ready file is the first child's to create, once its memory is touched; not ours.
    let mut ticks_opts = o.clone();
    ticks_opts.ready_file = None;
    run_ticks(&ticks_opts, |k| {
        // Reap the children that ended, so they neither pile up as zombies nor fail unseen.
        let mut poll_error = None;
        kids.0.retain_mut(|kid| match kid.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                if !status.success() {
                    failed.push(format!("pid {} {}", kid.id(), describe(status)));
                }
                false
            }
            Err(e) => {
                poll_error.get_or_insert(e);
                true
            }
        });
        if let Some(e) = poll_error {
            return Err(e).context("polling a churn child");
        }
        child.ready_file = if k == 0 { ready_file.clone() } else { None };
        kids.0.push(spawn(&mut child_command(&child)?)?);
        Ok(())
    })?;
    if !failed.is_empty() {
        bail!(
            "{} churn children failed: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    kids.wait_all()
}

/// Runs child A, then writes A's pid - 1 to ns_last_pid and spawns child B so the kernel hands
/// it A's pid: the (pid, start time) identity the recorder must get right. Another process's
/// fork can take the pid in between; then B is killed and the dance retried with a new A.
pub fn reuse(o: &Opts) -> Result<()> {
    const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";
    const ATTEMPTS: u32 = 50;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ReuseFailed(format!("reuse needs root: it writes {NS_LAST_PID}")).into());
    }
    let ns_last_pid = fs::OpenOptions::new()
        .write(true)
        .open(NS_LAST_PID)
        .map_err(|e| ReuseFailed(format!("cannot open {NS_LAST_PID} for writing: {e}")))?;
    let mut child = o.clone();
    child.shape = Shape::Flat;
    child.duration = o.child_life();
    child.hold = Duration::ZERO;
    let ready_file = child.ready_file.take();
    // Stay inside the watchdog's budget: give up before an attempt could outrun --duration.
    let deadline = Instant::now() + o.duration;
    let mut attempts = 0;
    while attempts < ATTEMPTS && (attempts == 0 || Instant::now() + 2 * o.child_life() < deadline) {
        attempts += 1;
        child.ready_file = if attempts == 1 {
            ready_file.clone()
        } else {
            None
        };
        let mut a = Kids(vec![spawn(&mut child_command(&child)?)?]);
        let a_pid = a.0[0].id();
        let status = a.0[0].wait().context("waiting for child A")?;
        if !status.success() {
            bail!("child A (pid {a_pid}) {}", describe(status));
        }
        child.ready_file = None;
        // Built before the write so only fork itself separates the write from B's birth.
        let mut b_cmd = child_command(&child)?;
        ns_last_pid
            .write_at(format!("{}", a_pid - 1).as_bytes(), 0)
            .map_err(|e| {
                ReuseFailed(format!("cannot write {} to {NS_LAST_PID}: {e}", a_pid - 1))
            })?;
        let b = Kids(vec![spawn(&mut b_cmd)?]);
        if b.0[0].id() == a_pid {
            b.wait_all().context("child B")?;
            println!("reuse pid={a_pid} ok");
            return Ok(());
        }
        drop(b); // another fork took the pid: kill B and try again
    }
    Err(ReuseFailed(format!(
        "could not give child B the pid of child A in {attempts} attempts: other processes kept \
         taking it"
    ))
    .into())
}

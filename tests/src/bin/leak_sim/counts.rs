//! The leaks that are not bytes: threads never joined, descriptors never closed, and their
//! steady counterparts (a fixed pool of threads; descriptors opened and closed).

use crate::mem::run_ticks;
use crate::opts::{Opts, Shape};
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A thread's stack: small, so a thread leak is a leak of threads and not of memory.
const STACK: usize = 64 << 10;

/// A thread that waits until it is told to stop (or the process exits).
pub struct Worker {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Worker {
    pub fn start() -> Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("leak-sim-worker".into())
            .stack_size(STACK)
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park();
                }
            })
            .context("starting a thread")?;
        Ok(Worker { stop, handle })
    }

    /// Tells the thread to stop and joins it.
    pub fn join(self) {
        self.stop.store(true, Ordering::Release);
        self.handle.thread().unpark();
        let _ = self.handle.join();
    }
}

/// A descriptor that stays open while it is held: /dev/null, read-only.
pub fn open_one() -> Result<File> {
    File::open("/dev/null").context("opening /dev/null")
}

/// What the count shapes hold until the process exits (dropping it closes the descriptors;
/// the threads stay parked until the process exits).
pub struct Held {
    _threads: VecDeque<Worker>,
    _files: VecDeque<File>,
}

/// `threads`: every tick, `--count` more threads that never exit; with `--pool N`, threads
/// are started until N run, and from then on each tick one is joined and another started, so
/// there are always N. `fds`: the same with descriptors (`--pool N`: the oldest is closed as
/// each new one is opened once N are open).
pub fn run(o: &Opts) -> Result<Held> {
    let mut threads: VecDeque<Worker> = VecDeque::new();
    let mut files: VecDeque<File> = VecDeque::new();
    run_ticks(o, |_| {
        for _ in 0..o.count {
            match o.shape {
                Shape::Threads => {
                    if o.pool > 0
                        && threads.len() as u32 >= o.pool
                        && let Some(w) = threads.pop_front()
                    {
                        w.join();
                    }
                    threads.push_back(Worker::start()?);
                }
                _ => {
                    if o.pool > 0 && files.len() as u32 >= o.pool {
                        files.pop_front();
                    }
                    files.push_back(open_one()?);
                }
            }
        }
        Ok(())
    })?;
    Ok(Held {
        _threads: threads,
        _files: files,
    })
}

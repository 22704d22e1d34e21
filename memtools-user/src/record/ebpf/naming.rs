//! Naming sampled stacks off the recorder's sampling thread. Symbolizing reads binaries and
//! their DWARF, seconds from a cold disk, and the poll that drains the kernel's counters must
//! not wait for it: a descriptor or a thread moving meanwhile would go unsampled. The recorder
//! drains the sites' counts and hands them here in batches; their named stacks come back to be
//! stored at a later poll, and all of them when the recording ends.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use memtools::model::{ProcessKey, TimeNs};
use memtools::sites::{Frame, SiteCause, SiteCount, Stack};
use memtools_common::{SiteCounts, SiteKey, site_cause};

use super::kept_maps::MapsKeeper;
use crate::symbolize::{Symbolizer, assemble, lookup_address};

/// Batches handed over and not yet named past which the recorder leaves the kernel's counts
/// where they are (they keep counting there) until the namer catches up: what waits in memory
/// stays a few drains' worth.
const MAX_WAITING: usize = 4;

/// Processes forgotten after which the symbolizer is made anew. blazesym caches per path, and
/// a process's files are looked up through its own /proc/PID/map_files paths: each process
/// named adds entries that outlive it (and each distinct file an open descriptor), so a suite
/// of many short commands would grow them without bound. Its docs advise renewing it; the
/// frames already found are kept, only binaries still in use get parsed again.
const RENEW_AFTER: usize = 1024;

/// One drain's worth of work.
pub struct Batch {
    /// Stacks left in the kernel for a later drain: named now, while their processes live (a
    /// short one may be gone by the time they are taken).
    pub left: Vec<SiteKey>,
    /// Drained counts, with the process each tgid's are stored under.
    pub drained: Vec<(ProcessKey, Vec<(SiteKey, SiteCounts)>)>,
    /// Wall-clock time minus boot-clock time, and the length of a time bucket (ns).
    pub offset: TimeNs,
    pub bucket_ns: u64,
    /// Processes gone and drained: forgotten once this batch is named.
    pub gone: Vec<u32>,
    /// The processes the recorder still holds: the maps kept for others go once older than
    /// `grace` (an exec seen whose process never was followed).
    pub held: HashSet<u32>,
    pub grace: Duration,
}

/// A named stack with its counts, for the sink.
pub struct NamedSite {
    pub key: ProcessKey,
    pub stack: Stack,
    pub count: SiteCount,
}

/// What names the stacks: a thread, or when it could not start, the caller's own thread.
pub struct Namer {
    way: Way,
}

enum Way {
    Thread {
        jobs: Option<Sender<Job>>,
        named: Receiver<NamedSite>,
        /// Batches sent and not yet named.
        waiting: Arc<AtomicUsize>,
        thread: Option<JoinHandle<()>>,
    },
    Inline {
        names: Box<Names>,
        named: Vec<NamedSite>,
    },
}

enum Job {
    Name(Box<Batch>),
    /// Answered, with how many processes' frames are held, once every earlier batch is named.
    Wait(Sender<usize>),
}

impl Namer {
    /// Starts the naming thread; `keeper` has the maps of processes gone before their stacks
    /// were named.
    pub fn start(keeper: Option<Arc<MapsKeeper>>) -> Namer {
        Namer::start_gated(keeper, None)
    }

    /// [`Namer::start`], the thread waiting for `gate` before each batch (tests hold it to
    /// see that handing a batch over does not wait for its naming).
    fn start_gated(keeper: Option<Arc<MapsKeeper>>, gate: Option<Receiver<()>>) -> Namer {
        let (jobs, inbox) = channel::<Job>();
        let (outbox, named) = channel();
        let waiting = Arc::new(AtomicUsize::new(0));
        let spawned = std::thread::Builder::new()
            .name("name-sites".into())
            .spawn({
                let (keeper, waiting) = (keeper.clone(), waiting.clone());
                move || {
                    let mut names = Names::new(keeper);
                    for job in inbox {
                        match job {
                            Job::Name(batch) => {
                                if let Some(g) = &gate {
                                    let _ = g.recv();
                                }
                                names.name(*batch, &mut |n| {
                                    let _ = outbox.send(n);
                                });
                                waiting.fetch_sub(1, Ordering::Release);
                            }
                            Job::Wait(answer) => {
                                let _ = answer.send(names.known.len());
                            }
                        }
                    }
                }
            });
        let way = match spawned {
            Ok(thread) => Way::Thread {
                jobs: Some(jobs),
                named,
                waiting,
                thread: Some(thread),
            },
            Err(e) => {
                eprintln!(
                    "memtools: cannot start naming growth sites on a thread of their own ({e}): \
                     they are named while sampling, which may delay it"
                );
                Way::Inline {
                    names: Box::new(Names::new(keeper)),
                    named: Vec::new(),
                }
            }
        };
        Namer { way }
    }

    /// Whether enough batches wait to be named that the next drain had better wait too.
    pub fn behind(&self) -> bool {
        match &self.way {
            Way::Thread { waiting, .. } => waiting.load(Ordering::Acquire) >= MAX_WAITING,
            Way::Inline { .. } => false,
        }
    }

    /// Hands a batch over to be named.
    pub fn send(&mut self, batch: Batch) {
        match &mut self.way {
            Way::Thread {
                jobs: Some(jobs),
                waiting,
                ..
            } => {
                waiting.fetch_add(1, Ordering::Release);
                if jobs.send(Job::Name(Box::new(batch))).is_err() {
                    // The thread is gone (it panicked): nothing will name this batch.
                    waiting.fetch_sub(1, Ordering::Release);
                }
            }
            Way::Thread { jobs: None, .. } => {}
            Way::Inline { names, named } => names.name(batch, &mut |n| named.push(n)),
        }
    }

    /// The stacks named so far, without waiting.
    pub fn named(&mut self) -> Vec<NamedSite> {
        match &mut self.way {
            Way::Thread { named, .. } => named.try_iter().collect(),
            Way::Inline { named, .. } => std::mem::take(named),
        }
    }

    /// Waits until every batch sent is named, at most `limit`; how many processes' frames are
    /// held then, or None when the limit passed first (a binary on a hung file system): the
    /// thread is then let go of rather than waited for again, and what it had not named is
    /// lost, so a recording never hangs at its end.
    pub fn wait(&mut self, limit: Duration) -> Option<usize> {
        match &mut self.way {
            Way::Thread {
                jobs: Some(jobs),
                thread,
                ..
            } => {
                let (answer, answered) = channel();
                if jobs.send(Job::Wait(answer)).is_err() {
                    return Some(0);
                }
                match answered.recv_timeout(limit) {
                    Ok(held) => Some(held),
                    Err(RecvTimeoutError::Disconnected) => Some(0),
                    Err(RecvTimeoutError::Timeout) => {
                        // Detached: it ends on its own once its inbox is closed.
                        thread.take();
                        None
                    }
                }
            }
            Way::Thread { jobs: None, .. } => Some(0),
            Way::Inline { names, .. } => Some(names.known.len()),
        }
    }
}

impl Drop for Namer {
    fn drop(&mut self) {
        if let Way::Thread { jobs, thread, .. } = &mut self.way {
            // Its inbox closed, the thread ends after the batch it is on.
            jobs.take();
            if let Some(t) = thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The naming itself: frames already found per process, and what was learnt of return
/// addresses.
struct Names {
    symbolizer: Symbolizer,
    keeper: Option<Arc<MapsKeeper>>,
    known: HashMap<u32, HashMap<u64, Vec<Frame>>>,
    /// Whether a leaf's return-address candidate follows a call instruction, by (tgid, address).
    after_call: HashMap<(u32, u64), bool>,
    /// Processes forgotten since the symbolizer was made (see [`RENEW_AFTER`]).
    forgotten: usize,
    /// How many times it was made anew.
    renewed: usize,
}

impl Names {
    fn new(keeper: Option<Arc<MapsKeeper>>) -> Names {
        Names {
            symbolizer: Symbolizer::new(),
            keeper,
            known: HashMap::new(),
            after_call: HashMap::new(),
            forgotten: 0,
            renewed: 0,
        }
    }

    /// Names a batch's stacks, gives each drained count with its stack to `out`, then lets go
    /// of the processes gone.
    fn name(&mut self, batch: Batch, out: &mut dyn FnMut(NamedSite)) {
        let mut left_by_tgid: HashMap<u32, Vec<Vec<u64>>> = HashMap::new();
        for k in &batch.left {
            let stack = self.stack_of(k);
            left_by_tgid.entry(k.tgid).or_default().push(stack);
        }
        for (tgid, stacks) in left_by_tgid {
            self.learn(tgid, &stacks);
        }
        for (key, entries) in batch.drained {
            let Some(tgid) = entries.first().map(|(k, _)| k.tgid) else {
                continue;
            };
            let stacks: Vec<Vec<u64>> = entries.iter().map(|(k, _)| self.stack_of(k)).collect();
            self.learn(tgid, &stacks);
            let known = self.known.entry(tgid).or_default();
            for ((k, c), stack) in entries.iter().zip(&stacks) {
                let cause = match k.cause {
                    site_cause::BRK => SiteCause::Brk,
                    site_cause::MMAP => SiteCause::Mmap,
                    _ => SiteCause::Fault,
                };
                out(NamedSite {
                    key,
                    stack: assemble(stack, known),
                    count: SiteCount {
                        time: batch.offset + (k.bucket.saturating_mul(batch.bucket_ns)) as TimeNs,
                        cause,
                        samples: c.samples,
                        bytes: c.bytes,
                    },
                });
            }
        }
        for tgid in batch.gone {
            self.forget(tgid);
        }
        if let Some(k) = &self.keeper {
            k.sweep(|t| batch.held.contains(&t), batch.grace);
        }
    }

    /// A sampled stack's addresses, with a frameless leaf's caller put back where frame
    /// pointers unwound past the leaf (without them the stack is one frame deep, and `sites`
    /// says so rather than guess).
    fn stack_of(&mut self, k: &SiteKey) -> Vec<u64> {
        let mut stack = addresses(k);
        let candidate = k.leaf_return;
        if stack.len() > 1 && candidate != 0 && stack[1] != candidate {
            let keeper = self.keeper.as_ref();
            let plausible = *self
                .after_call
                .entry((k.tgid, candidate))
                .or_insert_with(|| {
                    // The process's memory, or where it is gone, the kept file of its code.
                    code_before(k.tgid, candidate)
                        .or_else(|| keeper.and_then(|kp| kp.code_before(k.tgid, candidate)))
                        .is_some_and(|code| follows_a_call(&code))
                });
            if plausible {
                stack.insert(1, candidate);
            }
        }
        stack
    }

    /// Symbolizes the addresses of `stacks` not seen before in process `tgid`, while it
    /// lives: a process that exited keeps the frames of the addresses seen while it lived.
    fn learn(&mut self, tgid: u32, stacks: &[Vec<u64>]) {
        let known = self.known.entry(tgid).or_default();
        let mut missing: Vec<u64> = stacks
            .iter()
            .flat_map(|s| s.iter().enumerate().map(|(i, a)| lookup_address(*a, i)))
            .filter(|a| !known.contains_key(a))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return;
        }
        match self.symbolizer.resolve(tgid, &missing) {
            Ok(frames) => known.extend(frames),
            // Gone: named from what was kept of its maps, if anything was.
            Err(_) => {
                if let Some(maps) = self.keeper.as_ref().and_then(|k| k.maps_of(tgid)) {
                    known.extend(self.symbolizer.resolve_kept(&maps, &missing));
                }
            }
        }
    }

    /// Forgets a process gone and drained: its frames and kept maps.
    fn forget(&mut self, tgid: u32) {
        self.known.remove(&tgid);
        self.after_call.retain(|(t, _), _| *t != tgid);
        if let Some(k) = &self.keeper {
            k.forget(tgid);
        }
        self.forgotten += 1;
        if self.forgotten >= RENEW_AFTER {
            self.symbolizer = Symbolizer::new();
            self.forgotten = 0;
            self.renewed += 1;
        }
    }
}

/// The 7 bytes of process `pid`'s memory before `addr`; None when they cannot be read (it
/// is gone).
fn code_before(pid: u32, addr: u64) -> Option<[u8; 7]> {
    use std::os::unix::fs::FileExt;
    let mut before = [0u8; 7];
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    mem.read_exact_at(&mut before, addr.checked_sub(7)?).ok()?;
    Some(before)
}

/// Whether the 7 bytes of code `before` an address end in a call instruction (x86-64: `call
/// rel32`, or `call` through a register or memory, 2 to 7 bytes): then the address is a return
/// address, and the word the kernel read at the stack pointer is the caller a frameless leaf
/// function hides from frame-pointer unwinding. Anything else (data that happened to be
/// there) is not.
fn follows_a_call(before: &[u8; 7]) -> bool {
    // call rel32: E8 + 4 bytes.
    if before[2] == 0xe8 {
        return true;
    }
    // call r/m64: FF /2, with 0 to 5 bytes of ModRM, SIB and displacement after the opcode.
    (2..=7).any(|len| {
        let at = 7 - len;
        before[at] == 0xff && (before[at + 1] >> 3) & 7 == 2 && modrm_len(before[at + 1]) == len - 1
    })
}

/// The bytes of a ModRM byte and what follows it (SIB, displacement), for a 64-bit operand.
fn modrm_len(modrm: u8) -> usize {
    let (md, rm) = (modrm >> 6, modrm & 7);
    let sib = usize::from(md != 3 && rm == 4);
    let disp = match md {
        0 if rm == 5 => 4,
        1 => 1,
        2 => 4,
        _ => 0,
    };
    1 + sib + disp
}

/// A sampled stack's addresses, innermost first, without the unused slots.
pub fn addresses(key: &SiteKey) -> Vec<u64> {
    key.ips.iter().copied().take_while(|ip| *ip != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtools_common::SITE_STACK_DEPTH;

    const WAIT: Duration = Duration::from_secs(60);

    #[inline(never)]
    fn grow_here() -> u64 {
        std::hint::black_box(grow_here as *const () as u64)
    }

    fn batch_of(key: ProcessKey, address: u64, n: u64) -> Batch {
        let mut ips = [0u64; SITE_STACK_DEPTH];
        ips[0] = address;
        let site = SiteKey {
            tgid: key.pid,
            cause: site_cause::FAULT,
            bucket: n,
            leaf_return: 0,
            ips,
        };
        let counts = SiteCounts {
            samples: 1,
            bytes: 4096,
        };
        Batch {
            left: Vec::new(),
            drained: vec![(key, vec![(site, counts)])],
            offset: 0,
            bucket_ns: 1_000,
            gone: Vec::new(),
            held: HashSet::from([key.pid]),
            grace: Duration::from_secs(2),
        }
    }

    /// Handing batches over returns before they are named (the sampling thread never waits
    /// for symbolization); past a few waiting, the namer says it is behind; once they are
    /// named, every count comes back with its stack named, in the order sent.
    #[test]
    fn batches_are_named_on_a_thread_of_their_own() {
        let (open, gate) = channel();
        let mut namer = Namer::start_gated(None, Some(gate));
        let key = ProcessKey {
            pid: std::process::id(),
            start_time: 1,
        };
        let address = grow_here();
        for n in 0..MAX_WAITING as u64 {
            assert!(!namer.behind(), "behind after {n} batches");
            namer.send(batch_of(key, address, n));
        }
        assert!(namer.behind());
        assert!(namer.named().is_empty(), "named before the thread ran");
        for _ in 0..MAX_WAITING {
            open.send(()).expect("the naming thread");
        }
        assert_eq!(namer.wait(WAIT), Some(1), "one process's frames are held");
        assert!(!namer.behind());
        let named = namer.named();
        assert_eq!(named.len(), MAX_WAITING);
        for (n, site) in named.iter().enumerate() {
            assert_eq!(site.key, key);
            assert_eq!(site.count.time, n as TimeNs * 1_000);
            let function = site.stack.first().and_then(|f| f.function.clone());
            assert!(
                function.as_deref().is_some_and(|f| f.contains("grow_here")),
                "named {function:?}"
            );
        }
    }

    /// A naming thread that does not finish in time is let go of: the wait returns, and so
    /// does dropping the namer.
    #[test]
    fn a_stuck_naming_thread_does_not_hold_up_the_end() {
        let (open, gate) = channel();
        let mut namer = Namer::start_gated(None, Some(gate));
        let key = ProcessKey {
            pid: std::process::id(),
            start_time: 1,
        };
        namer.send(batch_of(key, grow_here(), 0));
        assert_eq!(namer.wait(Duration::from_millis(200)), None);
        drop(namer);
        // The thread ends once let through, its inbox closed.
        let _ = open.send(());
    }

    /// Without its thread, the namer names as it is handed batches.
    #[test]
    fn a_namer_without_its_thread_names_at_once() {
        let mut namer = Namer {
            way: Way::Inline {
                names: Box::new(Names::new(None)),
                named: Vec::new(),
            },
        };
        let key = ProcessKey {
            pid: std::process::id(),
            start_time: 1,
        };
        let mut batch = batch_of(key, grow_here(), 0);
        batch.gone = vec![key.pid];
        namer.send(batch);
        assert_eq!(namer.named().len(), 1);
        assert_eq!(namer.wait(WAIT), Some(0), "a process gone is forgotten");
    }

    /// A recording of many short processes does not keep what the symbolizer cached for each:
    /// it is made anew every [`RENEW_AFTER`] processes gone, and names as before after it.
    #[test]
    fn the_symbolizer_is_renewed_as_processes_go() {
        let mut names = Names::new(None);
        let key = ProcessKey {
            pid: std::process::id(),
            start_time: 1,
        };
        let address = grow_here();
        let mut named = Vec::new();
        for n in 0..2 * RENEW_AFTER as u64 + 1 {
            let mut batch = batch_of(key, address, n);
            batch.gone = vec![key.pid];
            names.name(batch, &mut |site| named.push(site));
        }
        assert_eq!(names.renewed, 2);
        assert_eq!(names.forgotten, 1);
        assert!(names.known.is_empty());
        assert_eq!(named.len(), 2 * RENEW_AFTER + 1);
        let last = named.last().and_then(|s| s.stack.first()?.function.clone());
        assert!(last.is_some_and(|f| f.contains("grow_here")));
    }

    #[test]
    fn return_addresses_follow_call_instructions() {
        // call rel32
        assert!(follows_a_call(&[0, 0, 0xe8, 1, 2, 3, 4]));
        // call *%rax (ff d0)
        assert!(follows_a_call(&[0, 0, 0, 0, 0, 0xff, 0xd0]));
        // call *0x8(%rax) (ff 50 08)
        assert!(follows_a_call(&[0, 0, 0, 0, 0xff, 0x50, 0x08]));
        // jmp *%rax (ff e0) is no call; nor are zeros.
        assert!(!follows_a_call(&[0, 0, 0, 0, 0, 0xff, 0xe0]));
        assert!(!follows_a_call(&[0; 7]));
    }
}

//! Growth sites from the kernel side (memtools-ebpf's sites.rs): attaching the page-fault
//! sampler, turning on the brk/mmap hooks' call sites, and draining the stacks they counted.
//!
//! The sampler is a perf software PAGE_FAULTS event with a sample period: the kernel counts
//! faults in the event and runs the program only at every Nth. For a recorded command it is
//! opened on the command with `inherit`, so its whole tree is sampled and nothing runs for any
//! other process; with `--all`, one event per CPU, the program keeping to followed processes.
//! The brk/mmap calls that grow a followed process are sampled in the kernel by their bytes, at
//! the same rate: one stack per `period` pages of growth, a large call always.

use aya::maps::{Array, HashMap as BpfHashMap, MapData, RingBuf};
use aya::programs::BtfTracePoint;
use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use memtools::model::{ProcessKey, TimeNs};
use memtools_common::{SiteCounts, SiteKey};

use super::boottime_ns;
use super::kept_maps::MapsKeeper;
use super::load::EbpfError;
use super::naming::{Batch, Namer};
use crate::record::{Event, RecordError, Sink};

/// How long the samples of a process the recorder has not (yet) seen start are kept in the
/// kernel's map before they are let go.
const UNKNOWN_GRACE_NS: u64 = 2_000_000_000;

/// How long the end of a recording waits for the last stacks to be named.
const FINISH_WAIT: Duration = Duration::from_secs(60);

/// Every this many page faults of a process, one stack is sampled by default: often enough
/// to name a few MiB of growth, rarely enough that a program doing nothing but fault pays
/// within 2 % (1.8 % in `cargo xtask bench overhead --sites`; 97 cost 2.2 %). Prime, so no
/// loop's stride keeps landing on the same code.
pub const DEFAULT_FAULT_PERIOD: u64 = 127;

/// How the faults to sample are chosen (`record --sites-sampler`; README: growth sites).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampler {
    /// A perf software page-fault event with a sample period, opened on the recorded tree:
    /// the kernel counts the faults and runs the program at every Nth only, and at no fault
    /// of any other process.
    #[default]
    PerfEvent,
    /// The `page_fault_user` and `page_fault_kernel` tracepoints, counting down per followed
    /// process: it needs no perf event, but runs at every page fault on the machine.
    Countdown,
}

/// What `record --sites` samples page faults with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultSampling {
    /// One stack every this many faults of a process.
    pub period: u64,
    pub sampler: Sampler,
}

/// Which processes' faults are sampled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SiteTarget {
    /// These processes and every process they start (the event is inherited).
    Tree(Vec<u32>),
    /// Every followed process on the machine: one event per CPU.
    AllCpus,
}

/// The attached fault sampler and the maps it counts in. Dropping it detaches the program.
pub struct SiteSampler {
    sites: BpfHashMap<MapData, SiteKey, SiteCounts>,
    dropped: Array<MapData, u64>,
    /// The followed processes that exec'ed, for the maps keeper (taken by the recorder).
    execs: Option<RingBuf<MapData>>,
    bucket_ns: u64,
}

/// Indices of the kernel side's `SITE_CONFIG` (memtools-ebpf's sites.rs `config`).
const CONFIG_BUCKET_NS: u32 = 0;
const CONFIG_SAMPLE_BYTES: u32 = 1;
const CONFIG_CALLS: u32 = 2;
const CONFIG_PERIOD: u32 = 3;

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |e| EbpfError::Map {
        map,
        error: Box::new(e),
    }
}

fn program_error(what: &'static str) -> impl Fn(aya::programs::ProgramError) -> EbpfError {
    move |e| EbpfError::Program {
        program: "site_fault",
        what,
        error: Box::new(e),
    }
}

/// The perf event sampler: one event per recorded process (inherited by its tree) or per CPU.
fn attach_perf_event(
    bpf: &mut aya::Ebpf,
    target: SiteTarget,
    period: u64,
) -> Result<(), EbpfError> {
    let program: &mut PerfEvent = bpf
        .program_mut("site_fault")
        .ok_or(EbpfError::Program {
            program: "site_fault",
            what: "exist",
            error: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
        })?
        .try_into()
        .map_err(program_error("be a perf event program"))?;
    program.load().map_err(program_error("load"))?;
    let event = PerfEventConfig::Software(SoftwareEvent::PageFaults);
    let policy = SamplePolicy::Period(period);
    match target {
        SiteTarget::Tree(pids) => {
            for pid in pids {
                let attached = program.attach(
                    event,
                    PerfEventScope::OneProcess { pid, cpu: None },
                    policy,
                    true,
                );
                match attached {
                    Ok(_) => {}
                    // Gone already (a command that ran in a blink): nothing to sample.
                    Err(aya::programs::ProgramError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(program_error("attach to a recorded process")(e)),
                }
            }
        }
        SiteTarget::AllCpus => {
            let cpus = aya::util::online_cpus().map_err(|(_, e)| EbpfError::Program {
                program: "site_fault",
                what: "list the online CPUs",
                error: Box::new(aya::programs::ProgramError::IOError(e)),
            })?;
            for cpu in cpus {
                program
                    .attach(
                        event,
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        policy,
                        false,
                    )
                    .map_err(program_error("attach to a CPU"))?;
            }
        }
    }
    Ok(())
}

/// The countdown sampler: the `page_fault_user` and `page_fault_kernel` BTF tracepoints
/// (x86's), as the perf event counts both the faults a process's code takes and those the
/// kernel takes on its memory for it.
fn attach_countdown(bpf: &mut aya::Ebpf) -> Result<(), EbpfError> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| EbpfError::Program {
        program: "site_fault_countdown",
        what: "read the kernel's BTF",
        error: Box::new(aya::programs::ProgramError::Btf(e)),
    })?;
    for (name, tracepoint) in [
        ("site_fault_countdown", "page_fault_user"),
        ("site_fault_countdown_kernel", "page_fault_kernel"),
    ] {
        let err = |what| {
            move |e| EbpfError::Program {
                program: name,
                what,
                error: Box::new(e),
            }
        };
        let program: &mut BtfTracePoint = bpf
            .program_mut(name)
            .ok_or(EbpfError::Program {
                program: name,
                what: "exist",
                error: Box::new(aya::programs::ProgramError::UnexpectedProgramType),
            })?
            .try_into()
            .map_err(err("be a BTF tracepoint program"))?;
        program
            .load(tracepoint, &btf)
            .map_err(err("load (the page fault tracepoints are x86's)"))?;
        program.attach().map_err(err("attach"))?;
    }
    Ok(())
}

impl SiteSampler {
    /// Configures and attaches the sampler of a loaded kernel side: one stack every `period`
    /// faults, counted in buckets of `bucket_ns` (the recording's interval).
    pub fn attach(
        bpf: &mut aya::Ebpf,
        target: SiteTarget,
        sampling: FaultSampling,
        page_size: u64,
        bucket_ns: u64,
    ) -> Result<SiteSampler, EbpfError> {
        let period = sampling.period.max(1);
        let bucket_ns = bucket_ns.max(1);
        let mut config: Array<MapData, u64> = bpf
            .take_map("SITE_CONFIG")
            .ok_or(EbpfError::MissingMap("SITE_CONFIG"))
            .and_then(|m| Array::try_from(m).map_err(map_error("SITE_CONFIG")))?;
        config
            .set(CONFIG_BUCKET_NS, bucket_ns, 0)
            .and_then(|()| config.set(CONFIG_SAMPLE_BYTES, page_size * period, 0))
            // The brk/mmap hooks sample the calls that grow a followed process from now on.
            .and_then(|()| config.set(CONFIG_CALLS, 1, 0))
            .and_then(|()| config.set(CONFIG_PERIOD, period, 0))
            .map_err(map_error("SITE_CONFIG"))?;
        let sites = bpf
            .take_map("SITES")
            .ok_or(EbpfError::MissingMap("SITES"))
            .and_then(|m| BpfHashMap::try_from(m).map_err(map_error("SITES")))?;
        let dropped = bpf
            .take_map("SITES_DROPPED")
            .ok_or(EbpfError::MissingMap("SITES_DROPPED"))
            .and_then(|m| Array::try_from(m).map_err(map_error("SITES_DROPPED")))?;
        let execs = bpf
            .take_map("SITE_EXECS")
            .ok_or(EbpfError::MissingMap("SITE_EXECS"))
            .and_then(|m| RingBuf::try_from(m).map_err(map_error("SITE_EXECS")))?;
        if sampling.sampler == Sampler::Countdown {
            attach_countdown(bpf)?;
        } else {
            attach_perf_event(bpf, target, period)?;
        }
        Ok(SiteSampler {
            sites,
            dropped,
            execs: Some(execs),
            bucket_ns,
        })
    }

    /// The length of a time bucket, ns.
    pub fn bucket_ns(&self) -> u64 {
        self.bucket_ns
    }

    /// Takes the entries `take` chooses; the keys of those it leaves come back too. A bucket
    /// still being counted for a live process is best left alone (see [`SiteRecorder::drain`]):
    /// between reading an entry and removing it, the kernel may add to it.
    pub fn drain(
        &mut self,
        mut take: impl FnMut(&SiteKey) -> bool,
    ) -> (Vec<(SiteKey, SiteCounts)>, Vec<SiteKey>) {
        let (keys, left): (Vec<SiteKey>, Vec<SiteKey>) = self
            .sites
            .keys()
            .filter_map(Result::ok)
            .partition(|k| take(k));
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Ok(counts) = self.sites.get(&key, 0) {
                out.push((key, counts));
            }
            let _ = self.sites.remove(&key);
        }
        (out, left)
    }

    /// Samples the kernel dropped because its map was full (raise the drain rate if not 0).
    pub fn dropped(&self) -> u64 {
        self.dropped.get(&0, 0).unwrap_or(0)
    }
}

/// The sampler with what turns its counts into stored sites: the process each tgid's samples
/// are stored under, the maps kept from its exec (for the samples drained after it exited),
/// and the [`Namer`] that symbolizes their stacks off the sampling thread.
pub struct SiteRecorder {
    sampler: SiteSampler,
    /// None when its thread could not start: stacks are then named only while processes live.
    keeper: Option<Arc<MapsKeeper>>,
    namer: Namer,
    /// The process each tgid with samples stood for, kept after it exits.
    keys: HashMap<u32, ProcessKey>,
}

impl SiteRecorder {
    pub fn new(mut sampler: SiteSampler) -> SiteRecorder {
        let keeper = sampler.execs.take().and_then(|execs| {
            MapsKeeper::start(execs)
                .map_err(|e| {
                    eprintln!(
                        "memtools: cannot start keeping the maps of processes ({e}): the stacks \
                         of one that exits between two samples keep bare addresses"
                    )
                })
                .ok()
                .map(Arc::new)
        });
        SiteRecorder {
            sampler,
            namer: Namer::start(keeper.clone()),
            keeper,
            keys: HashMap::new(),
        }
    }

    /// Stores the stacks named since the last drain, then drains the ended buckets, and
    /// every bucket of processes no longer followed (exited: they fault no more), or
    /// everything with `last`, for the namer. With `last` it waits for every stack to be
    /// named and stored. `offset`: wall-clock time minus boot-clock time; `key_of` finds the
    /// followed process a tgid stands for now.
    pub fn drain(
        &mut self,
        offset: TimeNs,
        last: bool,
        key_of: impl Fn(u32) -> Option<ProcessKey>,
        sink: &mut dyn Sink,
    ) -> Result<(), RecordError> {
        self.store_named(sink)?;
        // The namer is behind (a cold disk): the counts wait in the kernel, where they keep
        // counting, rather than in memory here.
        if !last && self.namer.behind() {
            return Ok(());
        }
        let bucket_ns = self.sampler.bucket_ns();
        let now_bucket = (boottime_ns().max(0) as u64) / bucket_ns;
        // A process the recorder does not know yet (its samples drained before its start is
        // read, as at the first poll) is left for a later drain: taken now, its samples would
        // have nothing to be stored under. Never known for this long, it is let go.
        let unknown_for = UNKNOWN_GRACE_NS.div_ceil(bucket_ns);
        let keys = &mut self.keys;
        let alive = |tgid: u32| key_of(tgid);
        let (drained, left) = self.sampler.drain(|k| {
            let now = alive(k.tgid);
            if let Some(key) = now {
                keys.insert(k.tgid, key);
            }
            let exited = now.is_none() && keys.contains_key(&k.tgid);
            let never_known =
                now.is_none() && !exited && k.bucket.saturating_add(unknown_for) < now_bucket;
            last || (now.is_some() && k.bucket < now_bucket) || exited || never_known
        });
        let mut by_tgid: HashMap<u32, Vec<(SiteKey, SiteCounts)>> = HashMap::new();
        for (k, c) in drained {
            by_tgid.entry(k.tgid).or_default().push((k, c));
        }
        // A process never seen followed has nothing to be stored under.
        let drained = by_tgid
            .into_iter()
            .filter_map(|(tgid, entries)| Some((*self.keys.get(&tgid)?, entries)))
            .collect();
        // The processes that exited had every sample taken above: what was kept for them goes
        // once named, so a long recording's memory stays that of the processes alive.
        let gone: Vec<u32> = self
            .keys
            .keys()
            .copied()
            .filter(|t| key_of(*t).is_none())
            .collect();
        for tgid in &gone {
            self.keys.remove(tgid);
        }
        self.namer.send(Batch {
            left,
            drained,
            offset,
            bucket_ns,
            gone,
            held: self.keys.keys().copied().collect(),
            // Maps kept for a process never followed (its exec seen, its fork lost) go once
            // its samples would have been let go too (a process is known within two polls
            // of its exec, so those of one about to be are kept).
            grace: Duration::from_nanos(UNKNOWN_GRACE_NS.max(bucket_ns.saturating_mul(3))),
        });
        if last {
            if self.namer.wait(FINISH_WAIT).is_none() {
                eprintln!(
                    "memtools: growth sites: naming the last stacks took more than {} s (a \
                     binary on a slow or hung file system?): those not named yet are not stored",
                    FINISH_WAIT.as_secs()
                );
            }
            self.store_named(sink)?;
        }
        Ok(())
    }

    /// Hands the stacks named so far to the sink.
    fn store_named(&mut self, sink: &mut dyn Sink) -> Result<(), RecordError> {
        for site in self.namer.named() {
            sink.event(Event::Sites {
                key: site.key,
                stack: &site.stack,
                counts: &[site.count],
            })?;
        }
        Ok(())
    }

    /// A forked child starts with its parent's kept maps.
    pub fn inherit(&self, child: u32, parent: u32) {
        if let Some(k) = &self.keeper {
            k.inherit(child, parent);
        }
    }

    /// Samples the kernel could not keep (its map was full).
    pub fn dropped(&self) -> u64 {
        self.sampler.dropped()
    }

    /// The process `tgid` stands for from now on (its samples are stored under it, even when
    /// drained after it exited).
    pub fn know(&mut self, tgid: u32, key: ProcessKey) {
        self.keys.insert(tgid, key);
    }

    /// How many processes' keys and frames are held, once every batch is named (for the test
    /// of forgetting).
    #[cfg(test)]
    fn held(&mut self) -> (usize, usize) {
        let frames = self
            .namer
            .wait(Duration::from_secs(60))
            .unwrap_or(usize::MAX);
        (self.keys.len(), frames)
    }
}

#[cfg(test)]
mod tests {
    use super::super::naming::addresses;
    use super::*;
    use memtools_common::{ProcStats, site_cause};

    /// The kernel side, loaded for a test: following nothing, the timer at 100 ms.
    fn load_kernel_side() -> super::super::load::Loaded {
        super::super::load::load(
            false,
            false,
            std::time::Duration::from_millis(100),
            4096,
            "",
            "",
        )
        .expect("loading")
    }

    #[test]
    fn faults_of_the_followed_tree_only_are_sampled_with_their_stacks() {
        faults_of_the_followed_only_are_sampled(Sampler::PerfEvent);
    }

    /// The countdown sampler runs at every fault on the machine; its counts keep to the
    /// followed process all the same, one stack every `period` of its faults.
    #[test]
    fn the_countdown_sampler_samples_the_followed_process_only_every_nth_fault() {
        faults_of_the_followed_only_are_sampled(Sampler::Countdown);
    }

    fn faults_of_the_followed_only_are_sampled(sampler: Sampler) {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED faults_of_the_followed_only_are_sampled ({sampler:?}): needs root");
            return;
        }
        let mut loaded = load_kernel_side();
        // The command waits before it grows, so the sampler is attached first: dd's 32 MiB
        // buffer is faulted in page by page. It runs detached (reparented away from this test
        // process), so the other tests of this binary, which look at this process's children,
        // neither see nor kill it.
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                "(sleep 0.5; exec dd if=/dev/zero of=/dev/null bs=32M count=2 status=none) \
                 </dev/null >/dev/null 2>&1 & echo $!",
            ])
            .output()
            .expect("sh");
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the command's pid");
        loaded
            .stats
            .insert(pid, ProcStats::default(), 0)
            .expect("following the command");
        let period = 16;
        let mut sampler = SiteSampler::attach(
            &mut loaded.bpf,
            SiteTarget::Tree(vec![pid]),
            FaultSampling { period, sampler },
            4096,
            100_000_000,
        )
        .expect("attaching the sampler");
        // The test process faults too, but is outside the tree.
        let noise: Vec<u8> = vec![1; 8 << 20];
        std::hint::black_box(&noise);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(std::time::Instant::now() < deadline, "dd did not end");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let (drained, _) = sampler.drain(|_| true);
        let ours: Vec<_> = drained
            .iter()
            .filter(|(k, _)| k.tgid == pid && k.cause == site_cause::FAULT)
            .collect();
        let samples: u64 = ours.iter().map(|(_, c)| c.samples).sum();
        // 8192 pages of the buffer alone: about 512 samples at 1 in 16.
        assert!(
            samples >= 200,
            "{samples} samples of {} entries",
            drained.len()
        );
        // dd's buffer is one mmap of 32 MiB: a call site of its own, with every byte it mapped.
        let mapped: u64 = drained
            .iter()
            .filter(|(k, _)| k.tgid == pid && k.cause == site_cause::MMAP)
            .map(|(_, c)| c.bytes)
            .sum();
        assert!(mapped >= 32 << 20, "{mapped} bytes mapped by calls");
        for (k, c) in &ours {
            assert_eq!(c.bytes, c.samples * period * 4096);
            assert!(
                !addresses(k).is_empty(),
                "a sample has at least its faulting address"
            );
        }
        assert!(
            drained.iter().all(|(k, _)| k.tgid != std::process::id()),
            "a process outside the tree was sampled"
        );
        assert!(
            sampler.drain(|_| true).0.is_empty(),
            "drained entries are removed"
        );
        assert_eq!(sampler.dropped(), 0);
    }

    /// A long recording holds what it keeps for the processes alive only: a process that
    /// exited is forgotten once its samples are drained.
    #[test]
    fn an_exited_process_is_forgotten_once_drained() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED an_exited_process_is_forgotten_once_drained: needs root");
            return;
        }
        let mut loaded = load_kernel_side();
        let sampling = FaultSampling {
            period: 97,
            sampler: Sampler::PerfEvent,
        };
        let sampler = SiteSampler::attach(
            &mut loaded.bpf,
            SiteTarget::Tree(Vec::new()),
            sampling,
            4096,
            100_000_000,
        )
        .expect("attaching the sampler");
        let mut recorder = SiteRecorder::new(sampler);
        struct Nothing;
        impl Sink for Nothing {
            fn event(&mut self, _: Event<'_>) -> Result<(), RecordError> {
                Ok(())
            }
        }
        let (alive, gone) = (
            ProcessKey {
                pid: 4_000_001,
                start_time: 1,
            },
            ProcessKey {
                pid: 4_000_002,
                start_time: 2,
            },
        );
        recorder.know(alive.pid, alive);
        recorder.know(gone.pid, gone);
        let key_of = |t: u32| (t == alive.pid).then_some(alive);
        recorder.drain(0, false, key_of, &mut Nothing).unwrap();
        assert_eq!(recorder.held(), (1, 0), "only the live process is held");
        recorder.drain(0, false, |_| None, &mut Nothing).unwrap();
        assert_eq!(recorder.held(), (0, 0));
    }
}

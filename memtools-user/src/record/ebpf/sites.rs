//! Growth sites from the kernel side (memtools-ebpf's sites.rs): attaching the page-fault
//! sampler and draining the stacks it counted.
//!
//! The sampler is a perf software PAGE_FAULTS event with a sample period: the kernel counts
//! faults in the event and runs the program only at every Nth. For a recorded command it is
//! opened on the command with `inherit`, so its whole tree is sampled and nothing runs for any
//! other process; with `--all`, one event per CPU, the program keeping to followed processes.

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use aya::programs::perf_event::{
    PerfEvent, PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent,
};
use memtools_common::{SiteCounts, SiteKey};

use super::load::EbpfError;

/// Every this many page faults of a process, one stack is sampled by default.
pub const DEFAULT_FAULT_PERIOD: u64 = 97;

/// Which processes' faults are sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteTarget {
    /// The recorded command and every process it starts (the event is inherited).
    Tree(u32),
    /// Every followed process on the machine: one event per CPU.
    AllCpus,
}

/// The attached fault sampler and the maps it counts in. Dropping it detaches the program.
pub struct SiteSampler {
    sites: BpfHashMap<MapData, SiteKey, SiteCounts>,
    dropped: Array<MapData, u64>,
    bucket_ns: u64,
}

/// Indices of the kernel side's `SITE_CONFIG` (memtools-ebpf's sites.rs `config`).
const CONFIG_BUCKET_NS: u32 = 0;
const CONFIG_FAULT_BYTES: u32 = 1;

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

impl SiteSampler {
    /// Configures and attaches the sampler of a loaded kernel side: one stack every `period`
    /// faults, counted in buckets of `bucket_ns` (the recording's interval).
    pub fn attach(
        bpf: &mut aya::Ebpf,
        target: SiteTarget,
        period: u64,
        page_size: u64,
        bucket_ns: u64,
    ) -> Result<SiteSampler, EbpfError> {
        let period = period.max(1);
        let bucket_ns = bucket_ns.max(1);
        let mut config: Array<MapData, u64> = bpf
            .take_map("SITE_CONFIG")
            .ok_or(EbpfError::MissingMap("SITE_CONFIG"))
            .and_then(|m| Array::try_from(m).map_err(map_error("SITE_CONFIG")))?;
        config
            .set(CONFIG_BUCKET_NS, bucket_ns, 0)
            .and_then(|()| config.set(CONFIG_FAULT_BYTES, page_size * period, 0))
            .map_err(map_error("SITE_CONFIG"))?;
        let sites = bpf
            .take_map("SITES")
            .ok_or(EbpfError::MissingMap("SITES"))
            .and_then(|m| BpfHashMap::try_from(m).map_err(map_error("SITES")))?;
        let dropped = bpf
            .take_map("SITES_DROPPED")
            .ok_or(EbpfError::MissingMap("SITES_DROPPED"))
            .and_then(|m| Array::try_from(m).map_err(map_error("SITES_DROPPED")))?;
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
            SiteTarget::Tree(pid) => {
                program
                    .attach(
                        event,
                        PerfEventScope::OneProcess { pid, cpu: None },
                        policy,
                        true,
                    )
                    .map_err(program_error("attach to the recorded command"))?;
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
        Ok(SiteSampler {
            sites,
            dropped,
            bucket_ns,
        })
    }

    /// The length of a time bucket, ns.
    pub fn bucket_ns(&self) -> u64 {
        self.bucket_ns
    }

    /// Takes what the kernel counted in buckets before `before_bucket` (None: everything, at
    /// the end of a recording). A bucket still being counted is left alone, so no sample is
    /// lost between reading an entry and removing it.
    pub fn drain(&mut self, before_bucket: Option<u64>) -> Vec<(SiteKey, SiteCounts)> {
        let keys: Vec<SiteKey> = self
            .sites
            .keys()
            .filter_map(Result::ok)
            .filter(|k| before_bucket.is_none_or(|b| k.bucket < b))
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Ok(counts) = self.sites.get(&key, 0) {
                out.push((key, counts));
            }
            let _ = self.sites.remove(&key);
        }
        out
    }

    /// Samples the kernel dropped because its map was full (raise the drain rate if not 0).
    pub fn dropped(&self) -> u64 {
        self.dropped.get(&0, 0).unwrap_or(0)
    }
}

/// A sampled stack's addresses, innermost first, without the unused slots.
pub fn addresses(key: &SiteKey) -> Vec<u64> {
    key.ips.iter().copied().take_while(|ip| *ip != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtools_common::{ProcStats, site_cause};

    #[test]
    fn faults_of_the_followed_tree_only_are_sampled_with_their_stacks() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED faults_of_the_followed_tree_only_are_sampled: needs root");
            return;
        }
        let mut loaded = super::super::load::load(false, false, 4096, "").expect("loading");
        // The command waits before it grows, so the sampler is attached first: dd's 32 MiB
        // buffer is faulted in page by page.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "sleep 0.5; exec dd if=/dev/zero of=/dev/null bs=32M count=2 status=none",
            ])
            .spawn()
            .expect("sh");
        let pid = child.id();
        loaded
            .stats
            .insert(pid, ProcStats::default(), 0)
            .expect("following the command");
        let period = 16;
        let mut sampler = SiteSampler::attach(
            &mut loaded.bpf,
            SiteTarget::Tree(pid),
            period,
            4096,
            100_000_000,
        )
        .expect("attaching the sampler");
        // The test process faults too, but is outside the tree.
        let noise: Vec<u8> = vec![1; 8 << 20];
        std::hint::black_box(&noise);
        let status = child.wait().expect("waiting for sh");
        assert!(status.success());
        let drained = sampler.drain(None);
        let ours: Vec<_> = drained.iter().filter(|(k, _)| k.tgid == pid).collect();
        let samples: u64 = ours.iter().map(|(_, c)| c.samples).sum();
        // 8192 pages of the buffer alone: about 512 samples at 1 in 16.
        assert!(
            samples >= 200,
            "{samples} samples of {} entries",
            drained.len()
        );
        for (k, c) in &ours {
            assert_eq!(k.cause, site_cause::FAULT);
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
            sampler.drain(None).is_empty(),
            "drained entries are removed"
        );
        assert_eq!(sampler.dropped(), 0);
    }
}

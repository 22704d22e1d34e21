//! Which series a recording becomes: how each [`Metric`] is exported, the family names and their
//! help, in one place (the README's fleet section lists the same).
//!
//! Metrics are gone through generically: a metric the recorder learns to store (threads, open
//! descriptors) becomes `memtools_process_<name>` and is analysed for leaks like memory, with no
//! change here, unless it is a counter or a kind of memory.

use memtools::model::Metric;

/// How one stored metric is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Export {
    /// A kind of memory: `memtools_process_memory_bytes{kind}`, and analysed when it is `rss`.
    Memory(&'static str),
    /// A count since the process started: `memtools_process_<name>_total`, never analysed
    /// (it only grows).
    Counter,
    /// Any other level (threads, open descriptors): `memtools_process_<name>`, analysed for
    /// leaks like resident memory.
    Level,
}

/// How `metric` is exported. Metrics added to the model later are levels unless listed here.
#[allow(unreachable_patterns)]
pub fn export_of(metric: Metric) -> Export {
    match metric {
        Metric::Rss => Export::Memory("rss"),
        Metric::RssAnon => Export::Memory("anon"),
        Metric::RssFile => Export::Memory("file"),
        Metric::RssShmem => Export::Memory("shmem"),
        Metric::Swap => Export::Memory("swap"),
        Metric::VmSize => Export::Memory("vm"),
        Metric::PageFaults
        | Metric::MmapCalls
        | Metric::MunmapCalls
        | Metric::BrkCalls
        | Metric::MappedBytes
        | Metric::UnmappedBytes => Export::Counter,
        _ => Export::Level,
    }
}

/// Whether the live analysis gives `metric` a verdict (`memtools_leak{metric}`): resident
/// memory, the metric leaks are judged by, and every other level.
pub fn analysed(metric: Metric) -> bool {
    metric == Metric::Rss || export_of(metric) == Export::Level
}

/// The metrics analysed, in [`Metric::ALL`] order.
pub fn analysed_metrics() -> impl Iterator<Item = Metric> {
    Metric::ALL.into_iter().filter(|&m| analysed(m))
}

/// The family of a per-process level or counter (`memtools_process_threads`).
pub fn process_family(metric: Metric) -> String {
    format!("memtools_process_{}", metric.name())
}

/// The family of a per-name aggregate of a level (`memtools_group_threads`).
pub fn group_family(metric: Metric) -> String {
    format!("memtools_group_{}", metric.name())
}

pub const PROCESS_MEMORY: &str = "memtools_process_memory_bytes";
pub const PROCESS_MEMORY_HELP: &str =
    "Memory of a process by kind (rss = anon + file + shmem; vm = virtual size), bytes.";
pub const LEAK: &str = "memtools_leak";
pub const LEAK_HELP: &str = "1 when the live analysis over the sliding window says the process leaks this metric, 0 when it says ok; absent while the data is insufficient.";
pub const GROWTH: &str = "memtools_growth_bytes_per_second";
pub const GROWTH_HELP: &str =
    "Growth rate of the resident memory the verdict is about, bytes per second.";
pub const TIME_TO_LIMIT: &str = "memtools_time_to_limit_seconds";
pub const TIME_TO_LIMIT_HELP: &str = "Seconds until the resident memory reaches its limit (cgroup or machine) at its growth rate; absent when it never does.";
pub const GROUP_PROCESSES: &str = "memtools_group_processes";
pub const GROUP_PROCESSES_HELP: &str =
    "Processes of this name not exported one by one (outside the top N by size and by growth).";
pub const GROUP_MEMORY: &str = "memtools_group_memory_bytes";
pub const GROUP_MEMORY_HELP: &str =
    "Memory of the processes of this name not exported one by one, summed by kind, bytes.";
pub const GROUP_LEAKS: &str = "memtools_group_leaks";
pub const GROUP_LEAKS_HELP: &str =
    "Processes of this name not exported one by one whose verdict for this metric is leak.";
pub const EXPORTED: &str = "memtools_exported_processes";
pub const EXPORTED_HELP: &str =
    "Processes exported one by one (the top N by size and the top N by growth).";
pub const FOLLOWED: &str = "memtools_recorder_processes_followed";
pub const FOLLOWED_HELP: &str = "Processes the recorder follows now.";
pub const SAMPLES: &str = "memtools_recorder_samples_written";
pub const SAMPLES_HELP: &str = "Samples the recorder wrote to its store.";
pub const LOST: &str = "memtools_recorder_events_lost";
pub const LOST_HELP: &str = "Events the kernel side had to drop (full maps or queues): processes not followed, fork/exec/exit events lost.";
pub const DRAIN: &str = "memtools_recorder_drain_seconds";
pub const DRAIN_HELP: &str =
    "Duration of the recorder's last look at the processes and write to the store, seconds.";
pub const STORE_SIZE: &str = "memtools_store_size_bytes";
pub const STORE_SIZE_HELP: &str =
    "Size of the sample store on disk, its write-ahead log included, bytes.";
pub const PRUNED: &str = "memtools_retention_pruned_samples";
pub const PRUNED_HELP: &str = "Samples deleted by retention (--retain).";
pub const ANALYSIS: &str = "memtools_analysis_seconds";
pub const ANALYSIS_HELP: &str = "Duration of the last run of the live analysis, seconds.";
pub const ANALYSED: &str = "memtools_analysis_processes";
pub const ANALYSED_HELP: &str = "Processes the last run of the live analysis judged.";
pub const INFO: &str = "memtools_recorder_info";
pub const INFO_HELP: &str = "The recorder: its backend (ebpf or procfs) and memtools' version.";

/// The help of a per-process level or counter family.
pub fn process_help(metric: Metric) -> String {
    match export_of(metric) {
        Export::Counter => format!("{} of the process since it started.", words(metric)),
        _ => format!("{} of the process.", words(metric)),
    }
}

/// The help of a per-name aggregate family.
pub fn group_help(metric: Metric) -> String {
    format!(
        "{} of the processes of this name not exported one by one, summed.",
        words(metric)
    )
}

/// A metric in words, for help texts.
fn words(metric: Metric) -> String {
    let name = metric.name().replace('_', " ");
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_kinds_counters_and_levels_are_told_apart() {
        assert_eq!(export_of(Metric::RssAnon), Export::Memory("anon"));
        assert_eq!(export_of(Metric::VmSize), Export::Memory("vm"));
        assert_eq!(export_of(Metric::PageFaults), Export::Counter);
        // Resident memory is analysed; its parts, virtual size and counters are not.
        let analysed: Vec<Metric> = analysed_metrics().collect();
        assert!(analysed.contains(&Metric::Rss));
        assert!(!analysed.contains(&Metric::RssAnon));
        assert!(!analysed.contains(&Metric::PageFaults));
        assert_eq!(
            process_family(Metric::PageFaults),
            "memtools_process_page_faults"
        );
        assert_eq!(
            process_help(Metric::PageFaults),
            "Page faults of the process since it started."
        );
    }
}

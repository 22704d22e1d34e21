//! What bounds each metric where a process ran, from what the session recorded.

use serde::Serialize;

use crate::model::Metric;
use crate::store::{ProcessRow, SessionRow};

/// The limit a history was analysed against; `bytes` is `None` where nothing bounds the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub bytes: Option<u64>,
    pub source: LimitSource,
}

/// Where a limit came from, most specific first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// `--limit` or the GUI's field.
    Given,
    /// The process's cgroup, where it ran.
    Cgroup,
    /// The memory of the machine that recorded the session.
    RecordingMachine,
    /// The memory of this machine: the session did not say (memorytools imports).
    ThisMachine,
    /// The process's address-space limit (RLIMIT_AS): what bounds its virtual size.
    AddressSpace,
    /// The process's open-file limit (RLIMIT_NOFILE): where a descriptor leak ends.
    OpenFiles,
    /// Its cgroup's task limit (`pids.max`): threads count against it.
    Tasks,
    /// The machine's `kernel.threads-max`.
    ThreadsMax,
    /// The machine's `kernel.pid_max`: every thread takes a pid.
    PidMax,
    /// Nothing bounds the metric (virtual size without an address-space limit, counters): no
    /// time to limit is claimed.
    None,
}
/// What bounds a metric, given the options and what the session recorded: memory by the
/// cgroup or the machine; virtual size only by an address-space limit (it is not bounded by the
/// machine's memory: a 31 GiB virtual size on a 24 GiB machine is common); file descriptors by
/// the process's RLIMIT_NOFILE; threads by the tightest of its cgroup's `pids.max` and the
/// machine's `threads-max` and `pid_max`; counters by nothing.
pub fn resolve_limit(
    given: Option<u64>,
    process: &ProcessRow,
    session: &SessionRow,
    this_machine: u64,
    metric: Metric,
) -> Limit {
    let limit = |bytes, source| Limit {
        bytes: Some(bytes),
        source,
    };
    if let Some(b) = given {
        return limit(b, LimitSource::Given);
    }
    match metric {
        Metric::VmSize => match process.address_space_limit {
            Some(b) => limit(b, LimitSource::AddressSpace),
            None => Limit {
                bytes: None,
                source: LimitSource::None,
            },
        },
        Metric::Rss | Metric::RssAnon | Metric::RssFile | Metric::RssShmem | Metric::Swap => {
            match (process.memory_limit, session.mem_total) {
                (Some(b), _) => limit(b, LimitSource::Cgroup),
                (None, Some(b)) => limit(b, LimitSource::RecordingMachine),
                (None, None) => limit(this_machine, LimitSource::ThisMachine),
            }
        }
        Metric::Fds => match process.open_files_limit {
            Some(b) => limit(b, LimitSource::OpenFiles),
            None => Limit {
                bytes: None,
                source: LimitSource::None,
            },
        },
        Metric::Threads => [
            (process.tasks_limit, LimitSource::Tasks),
            (session.threads_max, LimitSource::ThreadsMax),
            (session.pid_max, LimitSource::PidMax),
        ]
        .into_iter()
        .filter_map(|(b, source)| Some((b?, source)))
        .min_by_key(|(b, _)| *b)
        .map_or(
            Limit {
                bytes: None,
                source: LimitSource::None,
            },
            |(b, source)| limit(b, source),
        ),
        _ => Limit {
            bytes: None,
            source: LimitSource::None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded_by_their_own_limits() {
        use crate::model::{ProcessInfo, ProcessKey};
        let process = ProcessRow {
            id: 1,
            info: ProcessInfo {
                key: ProcessKey {
                    pid: 7,
                    start_time: 0,
                },
                ppid: None,
                name: "svc".into(),
                cmdline: String::new(),
            },
            exit: None,
            memory_limit: Some(1 << 30),
            address_space_limit: None,
            open_files_limit: Some(1024),
            tasks_limit: None,
            peak_rss: None,
        };
        let session = SessionRow {
            id: 1,
            host: String::new(),
            kernel: String::new(),
            backend: "procfs".into(),
            backend_reason: String::new(),
            interval_ns: None,
            command: None,
            source: None,
            start: 0,
            end: None,
            last_sample: None,
            exit: None,
            processes: 1,
            samples: 0,
            mem_total: Some(16 << 30),
            monotonic_offset_ns: None,
            cut_short: None,
            tree: None,
            threads_max: Some(120_000),
            pid_max: Some(32_768),
            lost: Default::default(),
        };
        let limit = |p: &ProcessRow, m| resolve_limit(None, p, &session, 8 << 30, m);
        assert_eq!(
            limit(&process, Metric::Fds),
            Limit {
                bytes: Some(1024),
                source: LimitSource::OpenFiles
            }
        );
        // Threads: the tightest of pid_max and threads-max, or the cgroup's pids.max.
        assert_eq!(
            limit(&process, Metric::Threads),
            Limit {
                bytes: Some(32_768),
                source: LimitSource::PidMax
            }
        );
        let in_cgroup = ProcessRow {
            tasks_limit: Some(500),
            open_files_limit: None,
            ..process.clone()
        };
        assert_eq!(
            limit(&in_cgroup, Metric::Threads),
            Limit {
                bytes: Some(500),
                source: LimitSource::Tasks
            }
        );
        // Not recorded (an older store): nothing is claimed.
        assert_eq!(limit(&in_cgroup, Metric::Fds).bytes, None);
        // Memory is still memory's.
        assert_eq!(limit(&process, Metric::Rss).source, LimitSource::Cgroup);
    }
}

//! The memory a process can grow into where it runs: its cgroup's limit.
//!
//! Read when a process is first seen and stored with it (the machine's memory is stored with
//! the session, [`memtools::limits::machine_memory`]), so the analysis projects "time to limit"
//! against the limit that applied where it ran, not on the machine that analyses it later.

use std::path::{Path, PathBuf};

pub use memtools::limits::machine_memory;

/// The tightest memory limit of a process's cgroup and its ancestors (cgroup v2 `memory.max`,
/// or v1 `memory.limit_in_bytes`); `None` when nothing below the machine's memory applies.
pub fn cgroup_limit(pid: u32) -> Option<u64> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let machine = machine_memory().unwrap_or(u64::MAX);
    cgroup_files(&cgroups, Path::new("/sys/fs/cgroup"))
        .into_iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .filter(|&limit| limit < machine)
        .min()
}

/// A process's address-space limit (RLIMIT_AS, the soft "Max address space" of
/// /proc/PID/limits): what bounds its virtual size. `None` when unlimited or unreadable.
pub fn address_space_limit(pid: u32) -> Option<u64> {
    parse_address_space(&std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?)
}

/// The soft address-space limit in bytes from the text of /proc/PID/limits.
pub fn parse_address_space(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    let soft = line["Max address space".len()..]
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

/// The limit files that apply to a process, from the text of /proc/PID/cgroup: its own cgroup's
/// and every ancestor's, for v2 (`0::/path`) and for v1's memory controller (`N:memory:/path`).
pub fn cgroup_files(cgroups: &str, root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            (root.join("memory"), "memory.limit_in_bytes")
        } else {
            continue;
        };
        let mut dir = base.join(path.trim_start_matches('/'));
        loop {
            files.push(dir.join(file));
            if dir == base || !dir.pop() {
                break;
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_cover_the_group_and_its_ancestors_in_v1_and_v2() {
        let root = Path::new("/cg");
        let v2 = cgroup_files("0::/user.slice/test.scope\n", root);
        assert_eq!(
            v2,
            vec![
                PathBuf::from("/cg/user.slice/test.scope/memory.max"),
                PathBuf::from("/cg/user.slice/memory.max"),
                PathBuf::from("/cg/memory.max"),
            ]
        );
        let v1 = cgroup_files("5:devices:/\n4:memory:/ci/job\n0::/\n", root);
        assert_eq!(
            v1,
            vec![
                PathBuf::from("/cg/memory/ci/job/memory.limit_in_bytes"),
                PathBuf::from("/cg/memory/ci/memory.limit_in_bytes"),
                PathBuf::from("/cg/memory/memory.limit_in_bytes"),
                PathBuf::from("/cg/memory.max"),
            ]
        );
    }

    #[test]
    fn address_space_limits_are_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max stack size            8388608              unlimited            bytes     \n\
                    Max address space         4294967296           unlimited            bytes     \n";
        assert_eq!(parse_address_space(text), Some(4 << 30));
        let unlimited = text.replace("4294967296          ", "unlimited           ");
        assert_eq!(parse_address_space(&unlimited), None);
        assert_eq!(parse_address_space("nothing"), None);
        // This process: unlimited here unless the test runner set one; either way it parses.
        let _ = address_space_limit(std::process::id());
    }

    #[test]
    fn this_process_has_a_limit_no_larger_than_the_machine() {
        let machine = machine_memory().unwrap();
        assert!(machine > 0);
        if let Some(limit) = cgroup_limit(std::process::id()) {
            assert!(limit < machine);
        }
    }
}

//! What a process can grow into where it runs: its cgroup's memory and task limits, its
//! address-space and open-file limits, and the machine's thread limits.
//!
//! Read when a process is first seen and stored with it (the machine's memory and thread limits
//! are stored with the session, [`memtools::limits::machine_memory`], [`threads_max`],
//! [`pid_max`]), so the analysis projects "time to limit" against the limit that applied where
//! it ran, not on the machine that analyses it later.

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

/// A process's address-space and open-file limits (RLIMIT_AS, RLIMIT_NOFILE), from one read
/// of /proc/PID/limits.
pub fn rlimits(pid: u32) -> (Option<u64>, Option<u64>) {
    match std::fs::read_to_string(format!("/proc/{pid}/limits")) {
        Ok(text) => (parse_address_space(&text), parse_open_files(&text)),
        Err(_) => (None, None),
    }
}

/// The soft address-space limit in bytes from the text of /proc/PID/limits.
pub fn parse_address_space(limits: &str) -> Option<u64> {
    soft_limit(limits, "Max address space")
}

/// The soft open-file limit (RLIMIT_NOFILE) from the text of /proc/PID/limits: the most
/// descriptors the process may hold.
pub fn parse_open_files(limits: &str) -> Option<u64> {
    soft_limit(limits, "Max open files")
}

/// The soft limit of the line that starts with `name`; `None` when unlimited.
fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    soft.parse().ok()
}

/// The tightest task limit (`pids.max`, cgroup v2 or v1's pids controller) of a process's
/// cgroup and its ancestors: threads count against it. `None` when none is set (`max`).
pub fn tasks_limit(pid: u32) -> Option<u64> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    controller_files(
        &cgroups,
        Path::new("/sys/fs/cgroup"),
        "pids",
        "pids.max",
        "pids.max",
    )
    .into_iter()
    .filter_map(|f| std::fs::read_to_string(f).ok())
    .filter_map(|v| v.trim().parse::<u64>().ok())
    .min()
}

/// The machine's `kernel.threads-max`: the most threads it runs at once.
pub fn threads_max() -> Option<u64> {
    read_sysctl("/proc/sys/kernel/threads-max")
}

/// The machine's `kernel.pid_max`: every thread takes a pid, so it bounds threads too.
pub fn pid_max() -> Option<u64> {
    read_sysctl("/proc/sys/kernel/pid_max")
}

fn read_sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The limit files that apply to a process, from the text of /proc/PID/cgroup: its own cgroup's
/// and every ancestor's, for v2 (`0::/path`) and for v1's memory controller (`N:memory:/path`).
pub fn cgroup_files(cgroups: &str, root: &Path) -> Vec<PathBuf> {
    controller_files(
        cgroups,
        root,
        "memory",
        "memory.max",
        "memory.limit_in_bytes",
    )
}

/// [`cgroup_files`] for any controller: `v2_file` in v2's hierarchy, `v1_file` in v1's
/// `controller` hierarchy.
pub fn controller_files(
    cgroups: &str,
    root: &Path,
    controller: &str,
    v2_file: &str,
    v1_file: &str,
) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, file) = if controllers.is_empty() {
            (root.to_path_buf(), v2_file)
        } else if controllers.split(',').any(|c| c == controller) {
            (root.join(controller), v1_file)
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
    fn open_file_and_task_limits_are_read_where_they_are() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max open files            1024                 524288               files     \n\
                    Max address space         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_open_files(text), Some(1024));
        assert_eq!(parse_address_space(text), None);
        // This process's, as getrlimit says.
        let (soft, _) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(rlimits(std::process::id()).1, Some(soft));
        let root = Path::new("/cg");
        assert_eq!(
            controller_files("8:pids:/ci\n0::/a\n", root, "pids", "pids.max", "pids.max"),
            vec![
                PathBuf::from("/cg/pids/ci/pids.max"),
                PathBuf::from("/cg/pids/pids.max"),
                PathBuf::from("/cg/a/pids.max"),
                PathBuf::from("/cg/pids.max"),
            ]
        );
        assert!(threads_max().unwrap() > 0);
        assert!(pid_max().unwrap() > 0);
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

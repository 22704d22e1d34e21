//! The recorded command's process tree, held so that stopping stops all of it and none of it
//! outlives the recorder.
//!
//! - With cgroup v2 where the recorder may make a cgroup (root, or a delegated subtree), the
//!   command is put in a new cgroup of its own, `memtools-PID` beside the recorder's, before it
//!   execs. The tree is then exactly the cgroup's members, daemonised grandchildren included,
//!   and `cgroup.kill` ends them all at once. The cgroup is removed at the end.
//! - Otherwise the tree is the recorder's descendants: the recorder is their child subreaper,
//!   so orphans (a subshell's children, a daemon's double fork) are re-parented to it and stay
//!   in the tree, found by walking /proc.
//!
//! Either way the command gets SIGKILL if the recorder dies (`PR_SET_PDEATHSIG`).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::procfs::parse_stat;

/// How the recorded tree is held.
pub struct Tree {
    cgroup: Option<Cgroup>,
    /// Why there is no cgroup, when there is none.
    why_not: String,
    recorder: u32,
    /// The open-file limit the command gets: the one the recorder was started with, before it
    /// raised its own to follow many processes (the command must run under the limit its
    /// user gave it, or a descriptor leak would hit a different wall).
    open_files: Option<(u64, u64)>,
}

/// The command's own cgroup.
struct Cgroup {
    dir: PathBuf,
    /// `cgroup.procs`, opened before the fork: the child writes "0" to it to move itself in.
    procs: File,
    /// The controllers the cgroup has (`memory pids`, or none).
    controllers: String,
}

/// Where the cgroup v2 hierarchy is mounted: (mount point, the cgroup path it shows as root).
fn cgroup2_mount() -> Option<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = left.split(' ').collect();
        let (root, mount) = (fields.get(3)?, fields.get(4)?);
        Some((PathBuf::from(unescape(mount)), unescape(root)))
    })
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of this process's own cgroup v2, or why there is none.
fn own_cgroup_dir() -> Result<PathBuf, String> {
    let (mount, root) = cgroup2_mount().ok_or("cgroup v2 is not mounted")?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let path = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process is in no cgroup v2")?;
    let rel = path
        .strip_prefix(root.trim_end_matches('/'))
        .ok_or("this process's cgroup is outside the mounted hierarchy")?;
    Ok(mount.join(rel.trim_start_matches('/')))
}

/// The name of the cgroup a recorder makes for its command.
fn cgroup_name(recorder: u32) -> String {
    format!("memtools-{recorder}")
}

/// Removes empty cgroups that recorders killed before they could clean up left beside ours.
/// Only our own names, only when their recorder is gone; a populated one stays (rmdir fails).
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("memtools-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

impl Cgroup {
    fn create(recorder: u32) -> Result<Cgroup, String> {
        if std::env::var_os("MEMTOOLS_NO_CGROUP").is_some() {
            return Err("MEMTOOLS_NO_CGROUP is set".to_string());
        }
        let parent = own_cgroup_dir()?;
        remove_stale(&parent);
        let dir = parent.join(cgroup_name(recorder));
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot make a cgroup in {}: {e}", parent.display()))?;
        let made = Cgroup::open(&dir);
        if made.is_err() {
            let _ = std::fs::remove_dir(&dir);
        }
        made
    }

    fn open(dir: &Path) -> Result<Cgroup, String> {
        if !dir.join("cgroup.kill").exists() {
            return Err("the kernel has no cgroup.kill (Linux 5.14 or later has)".to_string());
        }
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join("cgroup.procs"))
            .map_err(|e| format!("cannot open {}/cgroup.procs: {e}", dir.display()))?;
        let controllers = std::fs::read_to_string(dir.join("cgroup.controllers"))
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(Cgroup {
            dir: dir.to_path_buf(),
            procs,
            controllers,
        })
    }

    fn members(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// A process's parent and state, from /proc/PID/stat.
fn parent_and_state(pid: u32) -> Option<(u32, u8)> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|s| (s.ppid, s.state))
}

/// Every live (not zombie) descendant of `ancestor`, found by walking /proc.
pub fn descendants(ancestor: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let procs: Vec<(u32, u32, u8)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| parent_and_state(pid).map(|(ppid, state)| (pid, ppid, state)))
        .collect();
    let mut tree = vec![ancestor];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            procs
                .iter()
                .filter(|(pid, ppid, _)| *ppid == parent && !tree.contains(pid))
                .map(|(pid, _, _)| *pid)
                .collect::<Vec<_>>(),
        );
        i += 1;
    }
    tree.retain(|&p| {
        p != ancestor
            && procs
                .iter()
                .any(|(pid, _, state)| *pid == p && *state != b'Z' && *state != b'X')
    });
    tree
}

impl Tree {
    /// Makes the command's cgroup when possible (and removes empty ones that killed recorders
    /// left), otherwise holds the tree as the recorder's descendants. Never fails.
    pub fn prepare() -> Tree {
        let recorder = std::process::id();
        // Orphans of the tree are re-parented to us whatever holds the tree.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        match Cgroup::create(recorder) {
            Ok(cgroup) => Tree {
                cgroup: Some(cgroup),
                why_not: String::new(),
                recorder,
                open_files: None,
            },
            Err(why_not) => Tree {
                cgroup: None,
                why_not,
                recorder,
                open_files: None,
            },
        }
    }

    /// Gives the command this open-file limit (soft, hard): the recorder's own before it
    /// raised it.
    pub fn keep_open_files_limit(&mut self, limit: (u64, u64)) {
        self.open_files = Some(limit);
    }

    /// How the tree is held, for the session record and the README's words.
    pub fn describe(&self) -> String {
        match &self.cgroup {
            Some(c) => {
                let has = |name: &str| c.controllers.split(' ').any(|x| x == name);
                format!(
                    "cgroup {} ({})",
                    c.dir.display(),
                    if has("memory") && has("pids") {
                        "with the memory and pids controllers".to_string()
                    } else if c.controllers.is_empty() {
                        "no controllers enabled for it: membership and cgroup.kill only".to_string()
                    } else {
                        format!("controllers: {}", c.controllers)
                    }
                )
            }
            None => format!(
                "the recorder as subreaper of its descendants (no cgroup: {})",
                self.why_not
            ),
        }
    }

    /// Gives up the cgroup (the command could not be put in it): the tree is then the
    /// recorder's descendants.
    pub fn without_cgroup(&mut self, why: String) {
        if let Some(c) = self.cgroup.take() {
            let _ = std::fs::remove_dir(&c.dir);
        }
        self.why_not = why;
    }

    /// Whether the command goes into a cgroup.
    pub fn has_cgroup(&self) -> bool {
        self.cgroup.is_some()
    }

    /// Prepares `cmd` to join the tree before it execs: into the cgroup, and SIGKILL when the
    /// recorder dies.
    pub fn configure(&self, cmd: &mut std::process::Command) {
        let procs = self.cgroup.as_ref().map(|c| c.procs.as_raw_fd());
        let parent = self.recorder as libc::pid_t;
        let open_files = self.open_files.map(|(soft, hard)| libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        });
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // calls (write, setrlimit, prctl, getppid) on a descriptor opened before the fork; it
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(fd) = procs
                    && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                {
                    return Err(io::Error::last_os_error());
                }
                if let Some(limit) = &open_files
                    && libc::setrlimit(libc::RLIMIT_NOFILE, limit) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The recorder died before the line above: do not run orphaned.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }

    /// The tree's live processes now.
    pub fn members(&self) -> Vec<u32> {
        match &self.cgroup {
            Some(c) => c.members(),
            None => descendants(self.recorder),
        }
    }

    /// Sends `signal` to every process of the tree; with `skip_group`, not to those in that
    /// process group (a terminal's Ctrl-C reached them already).
    pub fn signal(&self, signal: Signal, skip_group: Option<Pid>) -> usize {
        let mut sent = 0;
        for pid in self.members() {
            let pid = Pid::from_raw(pid as i32);
            if skip_group.is_some() && nix::unistd::getpgid(Some(pid)).ok() == skip_group {
                continue;
            }
            if kill(pid, signal).is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// SIGKILL to the whole tree: `cgroup.kill` (atomic, forks included), or every descendant.
    pub fn kill(&self) {
        if let Some(c) = &self.cgroup
            && std::fs::OpenOptions::new()
                .write(true)
                .open(c.dir.join("cgroup.kill"))
                .and_then(|mut f| f.write_all(b"1"))
                .is_ok()
        {
            return;
        }
        self.signal(Signal::SIGKILL, None);
    }

    /// Removes the cgroup once it is empty; says why not otherwise.
    pub fn finish(&mut self) -> Result<(), String> {
        let Some(c) = self.cgroup.take() else {
            return Ok(());
        };
        // A process that just exited may still be counted for a moment.
        let mut last = None;
        for _ in 0..50 {
            match std::fs::remove_dir(&c.dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(format!(
            "cannot remove the cgroup {}: {}",
            c.dir.display(),
            last.map_or_else(String::new, |e| e.to_string())
        ))
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/sys/fs/cgroup\040x"), "/sys/fs/cgroup x");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn descendants_include_grandchildren_but_not_the_ancestor() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .unwrap();
        let me = std::process::id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut found = Vec::new();
        while std::time::Instant::now() < deadline {
            found = descendants(me);
            if found.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(found.len() >= 2, "the sleep is a grandchild: {found:?}");
        assert!(!found.contains(&me));
        // Only what this test started: other tests of this binary run their children beside.
        let mut ours = descendants(child.id());
        ours.push(child.id());
        for pid in &ours {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let _ = child.wait();
    }
}

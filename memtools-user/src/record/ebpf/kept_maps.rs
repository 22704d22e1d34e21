//! The maps of followed processes, kept from their exec (`record --sites`). Stacks are
//! symbolized at each drain while their processes live; one that grows and exits between two
//! drains is gone by then, so its frames are named from what was kept of its maps instead:
//! each executable mapping's range, file offset and path, and the mapped file itself, held
//! open. The file is opened through /proc/PID/map_files, so it is the very file the process
//! ran (even deleted, replaced or in another mount namespace since): nothing is looked up by
//! path afterwards, and no link a user planted is followed.
//!
//! A thread waits on the kernel side's `SITE_EXECS` ring and reads /proc/PID/maps at each exec,
//! then again a few milliseconds later, when the dynamic loader has mapped the libraries.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long after an exec the maps are read again, the libraries mapped by then.
const SETTLE: Duration = Duration::from_millis(5);
/// How often the thread looks whether it is asked to stop.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// The kernel wakes the thread for an exec at most once in this long: while execs come, the
/// thread looks at the ring this often on its own.
const WAKE_GAP: Duration = Duration::from_nanos(memtools_common::SITE_EXEC_WAKE_GAP_NS);
/// How long after the last exec it saw the thread keeps looking on its own.
const KEEP_LOOKING: Duration = Duration::from_millis(100);
/// At most this many processes' maps and this many open files: past them, a process goes
/// without kept maps (its stacks are named only while it lives), and memory stays bounded.
const MAX_PROCESSES: usize = 4096;
const MAX_FILES: usize = 512;
/// At most this many executable mappings of one process are kept.
const MAX_MAPPINGS: usize = 256;

/// One executable mapping of a file in a process.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Where in the file the mapping starts.
    pub offset: u64,
    /// The path the process mapped it from, shown as the frame's module.
    pub path: String,
    pub file: Arc<KeptFile>,
}

impl Mapping {
    /// The offset in the file of `address`, when it is in this mapping.
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        (self.start..self.end)
            .contains(&address)
            .then(|| address - self.start + self.offset)
    }
}

/// A mapped file held open, with its build-id read once.
#[derive(Debug)]
pub struct KeptFile {
    file: File,
    pub build_id: Option<String>,
}

impl KeptFile {
    /// A path that opens this very file: our own descriptor of it.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }
}

#[derive(Default)]
struct Kept {
    procs: HashMap<u32, Vec<Mapping>>,
    /// When each process's maps were first kept.
    since: HashMap<u32, Instant>,
    /// Open files by (device, inode), shared by every process that maps them.
    files: HashMap<(String, u64), Weak<KeptFile>>,
}

impl Kept {
    fn sweep(&mut self, followed: impl Fn(u32) -> bool, grace: Duration) {
        let Kept { procs, since, .. } = self;
        since.retain(|t, at| followed(*t) || at.elapsed() < grace);
        procs.retain(|t, _| since.contains_key(t));
    }
}

/// The thread that keeps the maps, and what it kept. Dropping it stops the thread.
pub struct MapsKeeper {
    kept: Arc<Mutex<Kept>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MapsKeeper {
    /// Starts keeping the maps of the processes `execs` names.
    pub fn start(execs: RingBuf<MapData>) -> std::io::Result<MapsKeeper> {
        let kept = Arc::new(Mutex::new(Kept::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("kept-maps".into())
            .spawn({
                let (kept, stop) = (kept.clone(), stop.clone());
                move || watch(execs, &kept, &stop)
            })?;
        Ok(MapsKeeper {
            kept,
            stop,
            thread: Some(thread),
        })
    }

    /// What was kept of `tgid`'s maps.
    pub fn maps_of(&self, tgid: u32) -> Option<Vec<Mapping>> {
        self.kept.lock().ok()?.procs.get(&tgid).cloned()
    }

    /// The 7 bytes before `address` in the kept file of `tgid`'s code that maps it (code is
    /// mapped from its file as it is there).
    pub fn code_before(&self, tgid: u32, address: u64) -> Option<[u8; 7]> {
        use std::os::unix::fs::FileExt;
        let kept = self.kept.lock().ok()?;
        let maps = kept.procs.get(&tgid)?;
        let start = address.checked_sub(7)?;
        let mapping = maps.iter().find(|m| m.file_offset(start).is_some())?;
        let at = mapping.file_offset(start)?;
        let mut code = [0u8; 7];
        mapping.file.file.read_exact_at(&mut code, at).ok()?;
        Some(code)
    }

    /// A forked child runs its parent's code until it execs: it starts with its parent's maps.
    pub fn inherit(&self, child: u32, parent: u32) {
        if let Ok(mut kept) = self.kept.lock()
            && kept.procs.len() < MAX_PROCESSES
            && let Some(maps) = kept.procs.get(&parent).cloned()
        {
            kept.procs.entry(child).or_insert(maps);
            kept.since.entry(child).or_insert_with(Instant::now);
        }
    }

    /// Lets go of a process's maps once its stacks are drained (and its files, unless
    /// another process maps them).
    pub fn forget(&self, tgid: u32) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.procs.remove(&tgid);
            kept.since.remove(&tgid);
        }
    }

    /// Lets go of the maps of processes not `followed`, kept longer than `grace` ago.
    pub fn sweep(&self, followed: impl Fn(u32) -> bool, grace: Duration) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.sweep(followed, grace);
        }
    }
}

impl Drop for MapsKeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: each exec's maps at once and again once settled, until asked to stop.
fn watch(mut execs: RingBuf<MapData>, kept: &Mutex<Kept>, stop: &AtomicBool) {
    let mut again: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut last_exec: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        // Execs just came: the kernel may not wake the thread for the next ones.
        let cap = if last_exec.is_some_and(|t| t.elapsed() < KEEP_LOOKING) {
            WAKE_GAP
        } else {
            STOP_CHECK
        };
        let wait = again
            .front()
            .map_or(cap, |(at, _)| at.saturating_duration_since(Instant::now()))
            .min(cap);
        {
            let mut fds = [PollFd::new(execs.as_fd(), PollFlags::POLLIN)];
            let timeout = poll_timeout(wait);
            // Interrupted or failed: the loop looks again after the timeout's worth.
            if poll(&mut fds, timeout).is_err() {
                std::thread::sleep(wait);
            }
        }
        while let Some(tgid) = next_tgid(&mut execs) {
            last_exec = Some(Instant::now());
            keep(kept, tgid);
            again.push_back((Instant::now() + SETTLE, tgid));
        }
        let now = Instant::now();
        while again.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, tgid)) = again.pop_front() {
                keep(kept, tgid);
            }
        }
    }
}

/// `wait` as poll's timeout, rounded up to its whole milliseconds: rounded down, a settled
/// read due in under a millisecond made it 0, and the thread spun (a whole CPU while a shell
/// loop exec'ed a command every millisecond).
fn poll_timeout(wait: Duration) -> PollTimeout {
    let ms = wait.as_micros().div_ceil(1000);
    PollTimeout::from(u16::try_from(ms).unwrap_or(u16::MAX))
}

fn next_tgid(execs: &mut RingBuf<MapData>) -> Option<u32> {
    loop {
        let item = execs.next()?;
        if let Some(b) = item.get(..4) {
            return Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        }
    }
}

/// Reads and keeps `tgid`'s executable file mappings; a process already gone keeps what an
/// earlier read kept.
fn keep(kept: &Mutex<Kept>, tgid: u32) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{tgid}/maps")) else {
        return;
    };
    let lines: Vec<MapsLine> = text.lines().filter_map(parse_maps_line).collect();
    let Ok(mut kept) = kept.lock() else {
        return;
    };
    if !kept.procs.contains_key(&tgid) && kept.procs.len() >= MAX_PROCESSES {
        return;
    }
    let mut maps = Vec::new();
    for line in lines.into_iter().take(MAX_MAPPINGS) {
        let key = (line.device.to_string(), line.inode);
        let file = match kept.files.get(&key).and_then(Weak::upgrade) {
            Some(file) => file,
            None => {
                kept.files.retain(|_, f| f.strong_count() > 0);
                if kept.files.len() >= MAX_FILES {
                    continue;
                }
                // The process's own view of the file, through the kernel's link to it.
                let through = format!("/proc/{tgid}/map_files/{:x}-{:x}", line.start, line.end);
                // Only a regular file is opened (a mapped device's open could do something),
                // without blocking, and checked again once open.
                if !std::fs::metadata(&through).is_ok_and(|m| m.is_file()) {
                    continue;
                }
                let Ok(file) = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&through)
                else {
                    continue;
                };
                if !file.metadata().is_ok_and(|m| m.is_file()) {
                    continue;
                }
                let build_id = blazesym::helper::read_elf_build_id(&format!(
                    "/proc/self/fd/{}",
                    file.as_raw_fd()
                ))
                .ok()
                .flatten()
                .map(|b| b.iter().map(|x| format!("{x:02x}")).collect());
                let file = Arc::new(KeptFile { file, build_id });
                kept.files.insert(key, Arc::downgrade(&file));
                file
            }
        };
        maps.push(Mapping {
            start: line.start,
            end: line.end,
            offset: line.offset,
            path: line.path.to_string(),
            file,
        });
    }
    if !maps.is_empty() {
        kept.procs.insert(tgid, maps);
        kept.since.entry(tgid).or_insert_with(Instant::now);
    }
}

/// An executable mapping of a file, from a line of /proc/PID/maps.
#[derive(Debug, PartialEq, Eq)]
struct MapsLine<'a> {
    start: u64,
    end: u64,
    offset: u64,
    device: &'a str,
    inode: u64,
    path: &'a str,
}

/// `start-end perms offset dev inode path`; None for a mapping that is not executable or not
/// of a file (anonymous memory, the stack, the vdso).
fn parse_maps_line(line: &str) -> Option<MapsLine<'_>> {
    let mut fields = line.splitn(6, ' ');
    let (range, perms, offset, device, inode) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let path = fields.next()?.trim_start();
    let (start, end) = range.split_once('-')?;
    let inode: u64 = inode.parse().ok()?;
    if perms.as_bytes().get(2) != Some(&b'x') || inode == 0 || !path.starts_with('/') {
        return None;
    }
    Some(MapsLine {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        device,
        inode,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_under_a_millisecond_is_never_a_zero_timeout() {
        assert_eq!(
            poll_timeout(Duration::from_micros(300)),
            PollTimeout::from(1u16)
        );
        assert_eq!(
            poll_timeout(Duration::from_micros(4200)),
            PollTimeout::from(5u16)
        );
        assert_eq!(poll_timeout(Duration::ZERO), PollTimeout::ZERO);
        assert_eq!(poll_timeout(STOP_CHECK), PollTimeout::from(100u16));
    }

    #[test]
    fn only_executable_file_mappings_are_kept_from_maps() {
        let exe = "55d0c7a00000-55d0c7a21000 r-xp 00002000 08:01 1311 /usr/bin/cat";
        assert_eq!(
            parse_maps_line(exe),
            Some(MapsLine {
                start: 0x55d0c7a00000,
                end: 0x55d0c7a21000,
                offset: 0x2000,
                device: "08:01",
                inode: 1311,
                path: "/usr/bin/cat",
            })
        );
        // A path with spaces, and one deleted since.
        let spaced = "7f00-7f10 r-xp 00000000 08:01 77 /opt/my app/lib.so (deleted)";
        assert_eq!(
            parse_maps_line(spaced).map(|l| l.path),
            Some("/opt/my app/lib.so (deleted)")
        );
        for other in [
            "55d0c7c21000-55d0c7c22000 r--p 00021000 08:01 1311 /usr/bin/cat",
            "7ffd1000-7ffd3000 r-xp 00000000 00:00 0 [vdso]",
            "7f00-7f10 rw-p 00000000 00:00 0",
            "7f00-7f10 r-xp 00000000 00:00 0",
            "garbage",
            "",
        ] {
            assert_eq!(parse_maps_line(other), None, "{other}");
        }
    }

    #[test]
    fn maps_of_processes_never_followed_go_after_the_grace() {
        let mut kept = Kept::default();
        let long_ago = Instant::now() - Duration::from_secs(10);
        for (tgid, at) in [(1, long_ago), (2, long_ago), (3, Instant::now())] {
            kept.procs.insert(tgid, Vec::new());
            kept.since.insert(tgid, at);
        }
        // 1 is followed; 2 was kept long ago and is not; 3 was kept just now.
        kept.sweep(|t| t == 1, Duration::from_secs(2));
        let mut left: Vec<u32> = kept.procs.keys().copied().collect();
        left.sort_unstable();
        assert_eq!(left, vec![1, 3]);
    }

    #[test]
    fn this_process_s_own_executable_is_kept_and_its_offsets_found() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED this_process_s_own_executable_is_kept: map_files needs root");
            return;
        }
        let kept = Mutex::new(Kept::default());
        let me = std::process::id();
        keep(&kept, me);
        let first = kept.lock().unwrap().procs.get(&me).cloned().expect("kept");
        // Read again (as once settled after an exec): the same open files, not new ones.
        keep(&kept, me);
        let kept = kept.lock().unwrap();
        let maps = kept.procs.get(&me).expect("this process's maps kept");
        assert!(
            first
                .iter()
                .zip(maps)
                .all(|(a, b)| Arc::ptr_eq(&a.file, &b.file))
        );
        let here = this_process_s_own_executable_is_kept_and_its_offsets_found as *const () as u64;
        let mapping = maps
            .iter()
            .find(|m| m.file_offset(here).is_some())
            .expect("this function's address is in a kept mapping");
        let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(std::fs::canonicalize(&mapping.path).unwrap(), exe);
        // The kept file is the executable itself, read through our descriptor.
        let held = std::fs::metadata(mapping.file.path()).unwrap();
        let real = std::fs::metadata(&exe).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((held.dev(), held.ino()), (real.dev(), real.ino()));
        // The C library too, with its build-id; nothing but executable file mappings.
        let libc = maps.iter().find(|m| m.path.contains("libc")).expect("libc");
        assert!(
            libc.file.build_id.as_ref().is_some_and(|b| b.len() >= 32),
            "{libc:?}"
        );
        assert!(maps.iter().all(|m| m.path.starts_with('/')), "{maps:?}");
    }
}

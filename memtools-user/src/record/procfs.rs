//! The /proc backend: polls /proc/PID/{statm,stat,status} of the followed processes.
//!
//! Cost is what matters here, and most of it is the kernel formatting these files (status
//! alone is ~8 us). Each followed process keeps its files open and re-reads them with `pread`
//! at offset 0, which makes the kernel regenerate them: no open/close, no path formatting, and
//! no allocation in the steady state (the read buffers are shared and parsing works on bytes).
//! Each tick reads only statm (~1 us); stat (page faults, name, state), status (resident
//! memory split into anon, file and shmem; swap; virtual size; threads) and the count of open
//! descriptors (one `fstat` of the held /proc/PID/fd, see [`super::fds`]) are read when statm
//! changed, and at least once a second.
//!
//! A held descriptor also pins the process it was opened for: once that process is gone the
//! read fails with ESRCH, even if its pid has been reused, so a reused pid always shows up as a
//! new process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::{RawDir, SeekFrom};

use super::fds::{FdCounting, FdDir};
use super::{Backend, Clock, Event, RecordError, Scope, Sink};
use memtools::model::{BackendKind, Metrics, ProcessInfo, ProcessKey, Sample, TimeNs};

/// PF_KTHREAD in /proc/PID/stat's flags: kernel threads have no user memory to follow.
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of /proc/PID/stat the recorder uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat<'a> {
    pub comm: &'a [u8],
    pub state: u8,
    pub ppid: u32,
    pub flags: u64,
    pub page_faults: u64,
    /// Clock ticks since boot.
    pub start_ticks: u64,
    pub vsize: u64,
    /// Where the command line lives in the process's memory (field 48): a new one after every
    /// exec (a new stack, placed at random), so an exec that keeps the name (`python3`
    /// running `python3 -c ...`, a shell running a shell) is seen too. 0 where the kernel
    /// hides it (a process the reader may not trace).
    pub arg_start: u64,
    /// Where the command line ends (field 49). Exec places the arguments' start before it
    /// writes them out (`arg_end == arg_start` meanwhile), so a command line read in that
    /// instant is empty and only a moved end tells that it is there now.
    pub arg_end: u64,
}

/// Parses /proc/PID/stat. The name (comm) may hold spaces and parentheses, so the fields are
/// counted from the last `)`.
pub fn parse_stat(buf: &[u8]) -> Option<Stat<'_>> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    let comm = buf.get(open + 1..close)?;
    let rest = buf.get(close + 2..)?;
    let mut stat = Stat {
        comm,
        ..Stat::default()
    };
    let (mut minflt, mut majflt) = (0, 0);
    let mut vsize_read = false;
    // Field 3 (state) is index 0 here.
    for (i, field) in rest.split(|&b| b == b' ').enumerate() {
        match i {
            0 => stat.state = *field.first()?,
            1 => stat.ppid = parse_u64(field)? as u32,
            6 => stat.flags = parse_u64(field)?,
            7 => minflt = parse_u64(field)?,
            9 => majflt = parse_u64(field)?,
            19 => stat.start_ticks = parse_u64(field)?,
            20 => {
                stat.vsize = parse_u64(field)?;
                stat.page_faults = minflt + majflt;
                vsize_read = true;
            }
            45 => stat.arg_start = parse_u64(field)?,
            46 => {
                stat.arg_end = parse_u64(field)?;
                return Some(stat);
            }
            _ => {}
        }
    }
    // Fewer fields (a kernel older than 3.5): everything but arg_start, once vsize was read.
    vsize_read.then_some(stat)
}

/// The memory figures of /proc/PID/status, in bytes, and its thread count; the memory lines
/// are absent for kernel threads and zombies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusMemory {
    pub vm_size: Option<u64>,
    pub rss_anon: Option<u64>,
    pub rss_file: Option<u64>,
    pub rss_shmem: Option<u64>,
    pub swap: Option<u64>,
    /// `Threads:`, the kernel's `signal->nr_threads`.
    pub threads: Option<u64>,
}

/// A sample's figures from status's memory lines and thread count and stat's page faults (both
/// backends read them this way).
pub(crate) fn metrics_of(status: &StatusMemory, page_faults: u64) -> Metrics {
    Metrics {
        rss_anon: status.rss_anon,
        rss_file: status.rss_file,
        rss_shmem: status.rss_shmem,
        swap: status.swap,
        vm_size: status.vm_size,
        page_faults: Some(page_faults),
        threads: status.threads,
        ..Metrics::default()
    }
}

/// Parses the `Vm*`/`Rss*` lines of /proc/PID/status (values in kB) and `Threads:`.
pub fn parse_status(buf: &[u8]) -> StatusMemory {
    let mut m = StatusMemory::default();
    for line in buf.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (slot, scale) = match &line[..colon] {
            b"VmSize" => (&mut m.vm_size, 1024),
            b"RssAnon" => (&mut m.rss_anon, 1024),
            b"RssFile" => (&mut m.rss_file, 1024),
            b"RssShmem" => (&mut m.rss_shmem, 1024),
            b"VmSwap" => (&mut m.swap, 1024),
            b"Threads" => (&mut m.threads, 1),
            _ => continue,
        };
        let value = line[colon + 1..]
            .split(|&b| b == b' ' || b == b'\t')
            .find(|f| !f.is_empty())
            .and_then(parse_u64);
        *slot = value.map(|v| v * scale);
    }
    m
}

fn parse_u64(field: &[u8]) -> Option<u64> {
    if field.is_empty() || field.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Reads a whole /proc file from offset 0 into `buf`, growing it only if the file outgrew it.
pub(crate) fn read_whole(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(buf.len().max(1024) * 2, 0);
        }
        let n = file.read_at(&mut buf[len..], len as u64)?;
        if n == 0 {
            return Ok(len);
        }
        len += n;
    }
}

/// How long unchanged figures may be reused before stat and status are read again anyway, so
/// page faults and names stay fresh for processes whose memory does not move.
const REFRESH_EVERY_NS: i64 = 1_000_000_000;

/// For this long after it is first read, a process is read whole at every tick: a young
/// process is the one that execs (a shell running a command, a wrapper), and an exec of a
/// program of the same name can leave statm as it was (two shells), so statm alone would
/// leave the new program's command line unseen for up to [`REFRESH_EVERY_NS`].
const YOUNG_NS: i64 = 1_000_000_000;

/// After a process's descriptor count changed, how long it is counted at every tick.
const FDS_ACTIVE_NS: i64 = 1_000_000_000;

/// The read buffers every process shares.
struct Buffers {
    statm: Vec<u8>,
    stat: Vec<u8>,
    status: Vec<u8>,
    /// For listing descriptors on kernels before 6.2.
    fd_list: Vec<u8>,
    fd_counting: FdCounting,
    /// Whether descriptors are counted at all (`MEMTOOLS_NO_COUNTS=1` turns it off, for the
    /// benchmarks that measure what counting costs).
    count_fds: bool,
}

/// Parses the first three fields of /proc/PID/statm (size, resident, shared; in pages).
pub fn parse_statm(buf: &[u8]) -> Option<[u64; 3]> {
    let mut fields = buf.split(|&b| b == b' ' || b == b'\n');
    Some([
        parse_u64(fields.next()?)?,
        parse_u64(fields.next()?)?,
        parse_u64(fields.next()?)?,
    ])
}

/// Reads one followed process and reports its sample; false when it has exited (its files fail
/// with ESRCH, it is a zombie, or its memory is already torn down).
///
/// statm is the cheap change detector (a third of the cost of stat, a tenth of status): while
/// a process's virtual, resident and shared sizes stay the same, so do the figures stat and
/// status would give, and the last ones are reported again without reading them.
///
/// Opening and closing descriptors changes none of statm: they are counted at each full read,
/// and, while a process's count keeps changing, at every tick for a second after its last
/// change ([`FDS_ACTIVE_NS`]), so a descriptor kept per test is seen test by test while an idle
/// process costs nothing more per tick.
fn sample_one(
    f: &mut Followed,
    bufs: &mut Buffers,
    clock: &Clock,
    sink: &mut dyn Sink,
) -> Result<bool, RecordError> {
    let statm = match read_whole(&f.statm, &mut bufs.statm) {
        Ok(len) => parse_statm(&bufs.statm[..len]),
        Err(_) => None,
    };
    // A zombie's statm reads all zeros: its memory is gone.
    let Some(statm) = statm.filter(|s| s[0] != 0) else {
        return Ok(false);
    };
    let now = clock.now();
    if f.first_full == 0 {
        f.first_full = now;
    }
    // A command line not placed yet (empty: read in the instant of an exec, before the kernel
    // wrote out the new program's arguments) is read again at the next tick, not a second on.
    if statm == f.last_statm
        && now - f.last_full < REFRESH_EVERY_NS
        && now - f.first_full >= YOUNG_NS
        && f.arg_end > f.arg_start
    {
        if now < f.fds_active_until {
            let fds = f.count_fds(bufs);
            if fds != f.last.fds {
                f.last.fds = fds;
                f.fds_active_until = now + FDS_ACTIVE_NS;
            }
        }
        let sample = Sample {
            time: now,
            metrics: f.last,
        };
        sink.event(Event::Sample(f.key, &sample))?;
        return Ok(true);
    }
    let stat = match read_whole(&f.stat, &mut bufs.stat) {
        Ok(len) => parse_stat(&bufs.stat[..len]).filter(|s| s.state != b'Z' && s.state != b'X'),
        Err(_) => None,
    };
    let Some(stat) = stat else {
        return Ok(false);
    };
    if stat.comm != &f.comm[..f.comm_len]
        || stat.arg_start != f.arg_start
        || stat.arg_end != f.arg_end
    {
        // A new name and command line after exec, or the command line written out since.
        f.arg_start = stat.arg_start;
        f.arg_end = stat.arg_end;
        let n = stat.comm.len().min(16);
        f.comm[..n].copy_from_slice(&stat.comm[..n]);
        f.comm_len = n;
        let name = String::from_utf8_lossy(&f.comm[..n]);
        let cmdline = read_cmdline(f.key.pid);
        sink.event(Event::Renamed {
            key: f.key,
            name: &name,
            cmdline: &cmdline,
        })?;
    }
    let status = match read_whole(&f.status, &mut bufs.status) {
        Ok(len) => parse_status(&bufs.status[..len]),
        Err(_) => return Ok(false),
    };
    if status.vm_size.is_none() {
        return Ok(false);
    }
    let fds_before = f.last.fds;
    f.last = metrics_of(&status, stat.page_faults);
    f.last.fds = f.count_fds(bufs);
    if f.last.fds != fds_before {
        f.fds_active_until = now + FDS_ACTIVE_NS;
    }
    f.last_statm = statm;
    f.last_full = now;
    let sample = Sample {
        time: clock.now(),
        metrics: f.last,
    };
    sink.event(Event::Sample(f.key, &sample))?;
    Ok(true)
}

/// The command line, arguments joined by spaces; empty when it cannot be read. Read when a
/// process is first seen and after exec, never per sample.
pub(crate) fn read_cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A followed process and its open files.
struct Followed {
    key: ProcessKey,
    statm: File,
    stat: File,
    status: File,
    /// Its /proc/PID/fd, when we may look (not for another user's process without root).
    fd_dir: Option<FdDir>,
    comm: [u8; 16],
    comm_len: usize,
    /// The command line's address and end at the last read of stat: they move at exec.
    arg_start: u64,
    arg_end: u64,
    /// statm's size, resident and shared at the last full read, and what that read gave.
    last_statm: [u64; 3],
    last: Metrics,
    last_full: TimeNs,
    /// When it was first read (0 before): it is read whole at every tick for [`YOUNG_NS`].
    first_full: TimeNs,
    /// Until when its descriptors are counted at every tick (they changed lately).
    fds_active_until: TimeNs,
}

impl Followed {
    fn count_fds(&self, bufs: &mut Buffers) -> Option<u64> {
        self.fd_dir
            .as_ref()
            .and_then(|d| d.count(bufs.fd_counting, &mut bufs.fd_list))
    }
}

/// A pid seen for the first time this tick, waiting to be followed or ignored.
#[derive(Clone, Copy)]
struct Candidate {
    pid: u32,
    ppid: u32,
    start_ticks: u64,
    decided: bool,
}

/// The /proc backend.
pub struct Procfs {
    /// /proc, listed with getdents64 into `dir_buf` (std's and nix's listings allocate per entry).
    proc_dir: File,
    dir_buf: Vec<u8>,
    scope: Scope,
    followed: HashMap<u32, Followed>,
    /// Pids seen and not followed, with the tick they were last listed in; forgotten when they
    /// leave /proc, so a pid that comes back is looked at again.
    ignored: HashMap<u32, u64>,
    tick: u64,
    candidates: Vec<Candidate>,
    exited: Vec<u32>,
    new_pids: Vec<u32>,
    bufs: Buffers,
    path: String,
    ns_per_tick: u64,
    /// Processes whose files we were not allowed to read (hidepid, another user's process).
    unreadable: u64,
}

impl Procfs {
    /// Opens /proc; the roots of a tree scope must exist.
    pub fn new(scope: Scope) -> Result<Procfs, RecordError> {
        let proc_dir = File::open("/proc")
            .map_err(|e| RecordError::Proc(format!("cannot list /proc: {e}")))?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = if hz > 0 { hz as u64 } else { 100 };
        if let Scope::Tree { roots, .. } = &scope {
            for &pid in roots {
                if std::fs::metadata(format!("/proc/{pid}")).is_err() {
                    return Err(RecordError::NoSuchPid(pid));
                }
            }
        }
        Ok(Procfs {
            proc_dir,
            dir_buf: Vec::with_capacity(64 * 1024),
            scope,
            followed: HashMap::new(),
            ignored: HashMap::with_capacity(4096),
            tick: 0,
            candidates: Vec::with_capacity(256),
            exited: Vec::with_capacity(256),
            new_pids: Vec::with_capacity(256),
            bufs: Buffers {
                statm: vec![0; 256],
                stat: vec![0; 1024],
                status: vec![0; 4096],
                fd_list: Vec::with_capacity(4096),
                fd_counting: FdCounting::here(),
                count_fds: super::fds::counting_wanted(),
            },
            path: String::with_capacity(32),
            ns_per_tick: 1_000_000_000 / hz,
            unreadable: 0,
        })
    }

    fn open_proc_file(&mut self, pid: u32, name: &str) -> io::Result<File> {
        self.path.clear();
        // Writing to a String cannot fail.
        let _ = write!(self.path, "/proc/{pid}/{name}");
        File::open(&self.path)
    }

    /// Samples the given followed processes (all of them when `only` is None); records exits.
    fn sample(
        &mut self,
        clock: &Clock,
        sink: &mut dyn Sink,
        only: Option<&[u32]>,
    ) -> Result<(), RecordError> {
        self.exited.clear();
        let Procfs {
            followed,
            exited,
            bufs,
            ..
        } = self;
        let mut one = |pid: u32, f: &mut Followed| -> Result<(), RecordError> {
            if !sample_one(f, bufs, clock, sink)? {
                exited.push(pid);
            }
            Ok(())
        };
        match only {
            None => {
                for (&pid, f) in followed.iter_mut() {
                    one(pid, f)?;
                }
            }
            Some(pids) => {
                for &pid in pids {
                    if let Some(f) = followed.get_mut(&pid) {
                        one(pid, f)?;
                    }
                }
            }
        }
        let now = clock.now();
        for &pid in self.exited.iter() {
            if let Some(f) = self.followed.remove(&pid) {
                sink.event(Event::Exited(f.key, now))?;
            }
        }
        Ok(())
    }

    /// Lists /proc and decides about every pid not seen before.
    fn discover(&mut self) {
        self.tick += 1;
        self.candidates.clear();
        let tick = self.tick;
        let mut new_pids = std::mem::take(&mut self.new_pids);
        new_pids.clear();
        if rustix::fs::seek(&self.proc_dir, SeekFrom::Start(0)).is_err() {
            return;
        }
        let mut entries = RawDir::new(&self.proc_dir, self.dir_buf.spare_capacity_mut());
        while let Some(entry) = entries.next() {
            let Ok(entry) = entry else { break };
            let Some(pid) = parse_u64(entry.file_name().to_bytes()) else {
                continue;
            };
            let pid = pid as u32;
            if self.followed.contains_key(&pid) {
                continue;
            }
            if let Some(seen) = self.ignored.get_mut(&pid) {
                *seen = tick;
                continue;
            }
            new_pids.push(pid);
        }
        for &pid in &new_pids {
            let stat = match self.open_proc_file(pid, "stat") {
                Ok(file) => read_whole(&file, &mut self.bufs.stat).ok(),
                Err(_) => None,
            };
            let parsed = stat.and_then(|len| parse_stat(&self.bufs.stat[..len]));
            match parsed {
                Some(s) if s.state != b'Z' && s.state != b'X' && s.flags & PF_KTHREAD == 0 => {
                    self.candidates.push(Candidate {
                        pid,
                        ppid: s.ppid,
                        start_ticks: s.start_ticks,
                        decided: false,
                    });
                }
                // Gone already, a zombie or a kernel thread: never followed.
                _ => {
                    self.ignored.insert(pid, tick);
                }
            }
        }
        self.new_pids = new_pids;
        self.ignored.retain(|_, seen| *seen == tick);
    }

    /// Follows the candidates the scope takes in: repeatedly, because a child can be listed
    /// before its parent when pids wrap.
    fn adopt(&mut self, sink: &mut dyn Sink) -> Result<(), RecordError> {
        loop {
            let mut progress = false;
            for i in 0..self.candidates.len() {
                let c = self.candidates[i];
                if c.decided
                    || !self
                        .scope
                        .takes(c.pid, c.ppid, |p| self.followed.contains_key(&p))
                {
                    continue;
                }
                self.candidates[i].decided = true;
                progress = true;
                self.follow(c, sink)?;
            }
            if !progress {
                break;
            }
        }
        for c in &self.candidates {
            if !c.decided {
                self.ignored.insert(c.pid, self.tick);
            }
        }
        Ok(())
    }

    fn follow(&mut self, c: Candidate, sink: &mut dyn Sink) -> Result<(), RecordError> {
        let files = self.open_proc_file(c.pid, "stat").and_then(|stat| {
            Ok((
                stat,
                self.open_proc_file(c.pid, "status")?,
                self.open_proc_file(c.pid, "statm")?,
            ))
        });
        let (stat, status, statm) = match files {
            Ok(files) => files,
            Err(e) => {
                if e.kind() == io::ErrorKind::PermissionDenied {
                    self.unreadable += 1;
                } else if e.raw_os_error() == Some(libc::EMFILE) {
                    return Err(RecordError::Proc(format!(
                        "out of file descriptors while following {} processes; raise `ulimit -n`",
                        self.followed.len()
                    )));
                }
                // Gone in the meantime: nothing to follow.
                return Ok(());
            }
        };
        // Re-read through the held descriptor: it pins the process, so the start time we key
        // it by is the one of the process we will be reading.
        let Some(s) = read_whole(&stat, &mut self.bufs.stat)
            .ok()
            .and_then(|len| parse_stat(&self.bufs.stat[..len]))
        else {
            return Ok(());
        };
        if s.start_ticks != c.start_ticks {
            // The pid was reused between listing and opening; the next tick sees the new one.
            return Ok(());
        }
        let mut comm = [0u8; 16];
        let comm_len = s.comm.len().min(16);
        comm[..comm_len].copy_from_slice(&s.comm[..comm_len]);
        let key = ProcessKey {
            pid: c.pid,
            start_time: s.start_ticks * self.ns_per_tick,
        };
        let (arg_start, arg_end) = (s.arg_start, s.arg_end);
        let cmdline = read_cmdline(c.pid);
        let info = ProcessInfo {
            key,
            ppid: Some(c.ppid),
            name: String::from_utf8_lossy(&comm[..comm_len]).into_owned(),
            cmdline,
        };
        sink.event(Event::Started(&info))?;
        self.followed.insert(
            c.pid,
            Followed {
                key,
                statm,
                stat,
                status,
                fd_dir: if self.bufs.count_fds {
                    FdDir::open(c.pid)
                } else {
                    None
                },
                comm,
                comm_len,
                arg_start,
                arg_end,
                // Never equal to a live process's statm: the first sample reads everything.
                last_statm: [0; 3],
                last: Metrics::default(),
                last_full: 0,
                first_full: 0,
                fds_active_until: 0,
            },
        );
        Ok(())
    }
}

impl Backend for Procfs {
    fn kind(&self) -> BackendKind {
        BackendKind::Procfs
    }

    fn poll(&mut self, clock: &Clock, sink: &mut dyn Sink) -> Result<(), RecordError> {
        self.sample(clock, sink, None)?;
        self.discover();
        self.adopt(sink)?;
        if self.candidates.iter().any(|c| c.decided) {
            // Sample the newcomers at once, so a process is recorded from its first tick.
            let mut newcomers = std::mem::take(&mut self.new_pids);
            newcomers.clear();
            newcomers.extend(self.candidates.iter().filter(|c| c.decided).map(|c| c.pid));
            self.sample(clock, sink, Some(&newcomers))?;
            self.new_pids = newcomers;
        }
        Ok(())
    }

    fn followed(&self) -> usize {
        self.followed.len()
    }

    fn unreadable(&self) -> u64 {
        self.unreadable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = b"4242 (a (b) c) S 17 4242 4242 0 -1 4194560 1000 0 24 0 5 6 0 0 20 0 3 0 987654 123456789 2000 18446744073709551615\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, b"a (b) c");
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 17);
        assert_eq!(s.flags, 4194560);
        assert_eq!(s.page_faults, 1024);
        assert_eq!(s.start_ticks, 987654);
        assert_eq!(s.vsize, 123456789);
        // A kernel older than 3.5 stops before the command line's address.
        assert_eq!(s.arg_start, 0);
        assert_eq!(parse_stat(b"4242 (x) S 1 2"), None);
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn stat_gives_where_the_command_line_lives() {
        let raw = std::fs::read("/proc/self/stat").expect("/proc/self/stat");
        let s = parse_stat(&raw).expect("this process's stat");
        assert_ne!(s.arg_start, 0, "{}", String::from_utf8_lossy(&raw));
        // Field n (from 1) of stat, counted by hand: the fields after the name start at 3.
        let field = |n: usize| -> u64 {
            String::from_utf8_lossy(&raw)
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(n - 3).map(str::to_owned))
                .and_then(|f| f.parse().ok())
                .unwrap_or_else(|| panic!("field {n}"))
        };
        assert_eq!(s.arg_start, field(48));
        assert_eq!(s.arg_end, field(49));
        assert!(s.arg_end > s.arg_start);
    }

    #[test]
    fn status_memory_lines_are_read_in_bytes() {
        let status = b"Name:\tcat\nVmPeak:\t 9000 kB\nVmSize:\t    8000 kB\nVmRSS:\t 700 kB\nRssAnon:\t 100 kB\nRssFile:\t 500 kB\nRssShmem:\t 100 kB\nVmSwap:\t 0 kB\nThreads:\t1\n";
        let m = parse_status(status);
        assert_eq!(m.vm_size, Some(8000 * 1024));
        assert_eq!(m.rss_anon, Some(100 * 1024));
        assert_eq!(m.rss_file, Some(500 * 1024));
        assert_eq!(m.rss_shmem, Some(100 * 1024));
        assert_eq!(m.swap, Some(0));
        assert_eq!(m.threads, Some(1));
        // A kernel thread or a zombie has no memory lines at all.
        assert_eq!(
            parse_status(b"Name:\tkworker/0:1\nState:\tI (idle)\n"),
            StatusMemory::default()
        );
    }

    #[test]
    fn this_process_reads_like_its_own_status() {
        let mut backend = Procfs::new(Scope::Tree {
            roots: vec![std::process::id()],
            reaper: None,
        })
        .unwrap();
        struct Collect(Vec<(ProcessKey, Sample)>, Vec<String>);
        impl Sink for Collect {
            fn event(&mut self, e: Event<'_>) -> Result<(), RecordError> {
                match e {
                    Event::Started(info) => self.1.push(info.name.clone()),
                    Event::Sample(k, s) => self.0.push((k, *s)),
                    _ => {}
                }
                Ok(())
            }
        }
        let mut sink = Collect(Vec::new(), Vec::new());
        backend.poll(&Clock::start(), &mut sink).unwrap();
        assert_eq!(sink.1.len(), 1, "only this process: {:?}", sink.1);
        let (key, sample) = sink.0[0];
        assert_eq!(key.pid, std::process::id());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let vm_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmSize:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        let vm = sample.metrics.vm_size.unwrap();
        // The test harness may map a little between the two reads.
        assert!(
            vm.abs_diff(vm_kb * 1024) < 64 * 1024 * 1024,
            "{vm} vs {vm_kb} kB"
        );
        assert!(sample.metrics.rss_anon.unwrap() > 0);
        assert!(sample.metrics.page_faults.unwrap() > 0);
        // The test harness runs threads of its own; this one at least.
        assert!(sample.metrics.threads.unwrap() >= 1);
        let fds = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let got = sample.metrics.fds.unwrap();
        assert!(got.abs_diff(fds) < 16, "{got} vs {fds}");
    }

    /// A process first read in the instant of its exec (arguments placed, not written yet:
    /// an empty command line) gets its command line at the next tick, once the end moved.
    #[test]
    fn a_command_line_read_mid_exec_is_read_again_once_written() {
        let me = std::process::id();
        let mut backend = Procfs::new(Scope::Tree {
            roots: vec![me],
            reaper: None,
        })
        .unwrap();
        struct Renames(Vec<String>);
        impl Sink for Renames {
            fn event(&mut self, e: Event<'_>) -> Result<(), RecordError> {
                if let Event::Renamed { cmdline, .. } = e {
                    self.0.push(cmdline.to_string());
                }
                Ok(())
            }
        }
        let mut sink = Renames(Vec::new());
        let clock = Clock::start();
        backend.poll(&clock, &mut sink).unwrap();
        backend.poll(&clock, &mut sink).unwrap();
        assert!(sink.0.is_empty(), "nothing moved: {:?}", sink.0);
        // As stat reads between setup_arg_pages and create_elf_tables.
        let f = backend
            .followed
            .get_mut(&me)
            .expect("this process followed");
        f.arg_end = f.arg_start;
        backend.poll(&clock, &mut sink).unwrap();
        assert_eq!(sink.0, vec![read_cmdline(me)]);
        assert!(!sink.0[0].is_empty());
    }

    /// A process in its first second is read whole at every tick, so an exec that leaves
    /// statm as it was is seen at once; an older one with statm unchanged is not read again
    /// before its refresh (what keeps a tick cheap).
    #[test]
    fn a_young_process_is_read_whole_at_every_tick() {
        // Detached (reparented away from this test process), so the other tests here, which
        // follow this process's tree, never see it; followed once it runs sleep.
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 10 </dev/null >/dev/null 2>&1 & echo $!"])
            .output()
            .expect("sh");
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("sleep's pid");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
        {
            assert!(std::time::Instant::now() < deadline, "sleep did not start");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let stop = || {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        };
        let mut backend = Procfs::new(Scope::Tree {
            roots: vec![pid],
            reaper: None,
        })
        .unwrap();
        struct Renames(usize);
        impl Sink for Renames {
            fn event(&mut self, e: Event<'_>) -> Result<(), RecordError> {
                if let Event::Renamed { .. } = e {
                    self.0 += 1;
                }
                Ok(())
            }
        }
        let mut sink = Renames(0);
        let clock = Clock::start();
        backend.poll(&clock, &mut sink).unwrap();
        backend.poll(&clock, &mut sink).unwrap();
        assert_eq!(sink.0, 0, "nothing moved");
        // As if it exec'ed with its statm unchanged: stat's command line address moved.
        let f = backend.followed.get_mut(&pid).expect("sleep followed");
        f.arg_start += 1;
        backend.poll(&clock, &mut sink).unwrap();
        assert_eq!(sink.0, 1, "a young process's exec is seen at the next tick");
        // The same a second on, statm unchanged and read whole just now: left for the refresh.
        let f = backend.followed.get_mut(&pid).expect("sleep followed");
        f.first_full -= YOUNG_NS;
        f.arg_start += 1;
        backend.poll(&clock, &mut sink).unwrap();
        stop();
        assert_eq!(
            sink.0, 1,
            "an older process with statm unchanged is not read whole"
        );
    }
}

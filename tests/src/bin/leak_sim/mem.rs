//! Memory that really reaches the kernel: regions mmap'd directly (the Rust allocator would keep
//! freed memory and round sizes), every page touched so it is resident, unmapped on drop so RSS
//! falls at once. Also the tick clock and the ready/pid files every shape shares.

use crate::opts::{Kind, Opts};
use anyhow::{Context, Result, bail};
use std::{
    fs,
    io::{self, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    ptr,
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

/// One mapping, resident in full; unmapped on drop.
pub struct Region {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Region {
    /// Maps `bytes` (rounded up to whole pages) of `kind` and touches every page.
    pub fn new(kind: Kind, bytes: u64) -> Result<Region> {
        let page = page_size();
        let len = usize::try_from(bytes)
            .ok()
            .and_then(|b| b.checked_next_multiple_of(page))
            .with_context(|| format!("{bytes} bytes do not fit in the address space"))?;
        if len == 0 {
            return Ok(Region {
                ptr: ptr::null_mut(),
                len,
            });
        }
        match kind {
            Kind::Anon => {
                let region = map(
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                )?;
                // Transparent huge pages would make faults (which the recorder counts) and RSS
                // move in 2 MiB lumps across regions; keep anon memory in base pages.
                // SAFETY: advice on a mapping we own; failure only loses the hint.
                unsafe { libc::madvise(region.ptr, len, libc::MADV_NOHUGEPAGE) };
                region.touch(true);
                Ok(region)
            }
            Kind::Shmem => {
                // SAFETY: plain syscall with a NUL-terminated name.
                let fd = unsafe { libc::memfd_create(c"leak-sim".as_ptr(), libc::MFD_CLOEXEC) };
                if fd < 0 {
                    return Err(io::Error::last_os_error()).context("memfd_create");
                }
                // SAFETY: fd was just returned to us and nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let file = fs::File::from(fd);
                file.set_len(len as u64)
                    .with_context(|| format!("sizing a memfd to {len} bytes"))?;
                // The mapping keeps the memfd alive; closing our fd (on return) means munmap
                // frees the pages.
                let region = map(
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                )?;
                region.touch(true);
                Ok(region)
            }
            Kind::File => {
                let path = temp_file_path()?;
                let mut file = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                // Unlinked at once: the mapping keeps the inode, and nothing is left behind
                // however the process ends.
                fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                let chunk = vec![0xa5u8; 1 << 16];
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    file.write_all(&chunk[..n])
                        .with_context(|| format!("writing {len} bytes to {}", path.display()))?;
                    left -= n;
                }
                // Shared and read-only: reading maps the page-cache pages themselves (RssFile);
                // a private writable mapping would copy them into anonymous memory.
                let region = map(len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd())?;
                region.touch(false);
                Ok(region)
            }
        }
    }

    fn touch(&self, write: bool) {
        let base = self.ptr.cast::<u8>();
        let mut sum = 0u8;
        for offset in (0..self.len).step_by(page_size()) {
            // SAFETY: offset < len, inside our mapping, which is readable and, when `write`,
            // writable.
            unsafe {
                let p = base.add(offset);
                if write {
                    p.write_volatile(0xa5);
                } else {
                    sum ^= p.read_volatile();
                }
            }
        }
        std::hint::black_box(sum);
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: ptr/len is a mapping this Region created and nothing else refers to.
            // munmap of a whole mapping we own cannot fail short of a bug; nothing to report.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

fn map(len: usize, prot: libc::c_int, flags: libc::c_int, fd: libc::c_int) -> Result<Region> {
    // SAFETY: a fresh mapping at an address the kernel picks; it aliases nothing of ours.
    let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error()).with_context(|| format!("mmap of {len} bytes"));
    }
    Ok(Region { ptr: p, len })
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

/// A fresh name for a backing file. Pages of a file on tmpfs count as RssShmem, not RssFile, so
/// a tmpfs directory is refused ($TMPDIR) or skipped for /var/tmp (/tmp, often tmpfs in CI).
fn temp_file_path() -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match std::env::var_os("TMPDIR").filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if is_tmpfs(&dir)? {
                bail!(
                    "--kind file: TMPDIR={} is tmpfs, whose pages count as RssShmem, not \
                     RssFile; point TMPDIR at a disk-backed directory",
                    dir.display()
                );
            }
            dir
        }
        None => match ["/tmp", "/var/tmp"]
            .into_iter()
            .map(PathBuf::from)
            .find(|d| is_tmpfs(d).is_ok_and(|tmpfs| !tmpfs))
        {
            Some(dir) => dir,
            None => bail!(
                "--kind file: /tmp and /var/tmp are tmpfs (or missing), whose pages count as \
                 RssShmem; set TMPDIR to a disk-backed directory"
            ),
        },
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!("leak-sim-{}-{n}.tmp", std::process::id())))
}

fn is_tmpfs(dir: &Path) -> Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: statfs is plain old data; zeroed is a valid initial value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated, st is a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("statfs {}", dir.display()));
    }
    Ok(st.f_type == libc::TMPFS_MAGIC)
}

/// Sleeps until `t` (no-op if it passed). Shapes schedule against a start instant, so work done
/// in a tick never shifts the ticks after it.
pub fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        thread::sleep(t - now);
    }
}

/// Calls `on_tick(k)` at start + k * every for every tick before start + duration, creates the
/// ready file after tick 0, and returns at start + duration.
pub fn run_ticks(o: &Opts, mut on_tick: impl FnMut(u32) -> Result<()>) -> Result<()> {
    let start = Instant::now();
    let end = start + o.duration;
    let mut k = 0u32;
    while let Some(t) = o
        .every
        .checked_mul(k)
        .map(|d| start + d)
        .filter(|&t| t < end)
    {
        sleep_until(t);
        on_tick(k)?;
        if k == 0 {
            mark_ready(o)?;
        }
        k += 1;
    }
    if k == 0 {
        mark_ready(o)?; // zero duration: nothing to wait for
    }
    sleep_until(end);
    Ok(())
}

/// Creates the ready file, if asked for: tests wait on it instead of guessing a sleep.
pub fn mark_ready(o: &Opts) -> Result<()> {
    if let Some(path) = &o.ready_file {
        fs::File::create(path)
            .with_context(|| format!("creating ready file {}", path.display()))?;
    }
    Ok(())
}

/// Writes our pid via a rename, so a test polling the file never reads it half written.
pub fn write_pid_file(path: &Path) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing pid file {}", Path::new(&tmp).display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming pid file to {}", path.display()))
}

/// Sleep helper for holds measured from now.
pub fn sleep(d: Duration) {
    if !d.is_zero() {
        thread::sleep(d);
    }
}

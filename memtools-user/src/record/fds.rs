//! Counting a process's open file descriptors, as cheaply as the kernel allows.
//!
//! Since Linux 6.2 the size `stat()` gives for /proc/PID/fd is the number of open descriptors
//! (the kernel counts the bits of the process's open-fd bitmap): one system call, no directory
//! read. Before, that size is 0 and the entries have to be listed. The directory is opened once
//! per process and held, like the recorder's other /proc files: `fstat` on it needs no path
//! lookup, and it pins the process (a reused pid fails instead of counting another process).

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};

/// Whether descriptors are to be counted: always, unless `MEMTOOLS_NO_COUNTS=1` (for the
/// benchmarks that measure what counting costs: `cargo xtask bench recorder`).
pub fn counting_wanted() -> bool {
    std::env::var_os("MEMTOOLS_NO_COUNTS").is_none_or(|v| v != "1")
}

/// How this kernel lets descriptors be counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdCounting {
    /// `fstat` of the held /proc/PID/fd: its size is the count (Linux 6.2 and later).
    Stat,
    /// List the directory's entries (older kernels).
    List,
}

impl FdCounting {
    /// The way for a kernel release like `6.18.4-arch1`: [`FdCounting::Stat`] from 6.2 on.
    pub fn for_release(release: &str) -> FdCounting {
        let mut parts = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|p| p.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(major), Some(minor)) if (major, minor) >= (6, 2) => FdCounting::Stat,
            _ => FdCounting::List,
        }
    }

    /// The way for the running kernel.
    pub fn here() -> FdCounting {
        nix::sys::utsname::uname()
            .map(|u| FdCounting::for_release(&u.release().to_string_lossy()))
            .unwrap_or(FdCounting::List)
    }
}

/// A process's /proc/PID/fd, held open.
pub struct FdDir {
    dir: File,
}

impl FdDir {
    /// Opens a process's descriptor directory; `None` when it is gone or not ours to look at
    /// (another user's process without root: then its descriptors are not recorded).
    pub fn open(pid: u32) -> Option<FdDir> {
        let fd = rustix::fs::open(
            format!("/proc/{pid}/fd"),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(FdDir {
            dir: File::from(fd),
        })
    }

    /// The process's open descriptors now; `None` once it has exited. `buf` is reused for
    /// listing (the older kernels' way), so counting allocates nothing.
    pub fn count(&self, how: FdCounting, buf: &mut Vec<u8>) -> Option<u64> {
        match how {
            FdCounting::Stat => rustix::fs::fstat(self.dir.as_fd())
                .ok()
                .map(|st| st.st_size.max(0) as u64),
            FdCounting::List => self.list(buf),
        }
    }

    fn list(&self, buf: &mut Vec<u8>) -> Option<u64> {
        rustix::fs::seek(&self.dir, SeekFrom::Start(0)).ok()?;
        if buf.capacity() < 4096 {
            buf.reserve(4096);
        }
        let spare: &mut [MaybeUninit<u8>] = buf.spare_capacity_mut();
        let mut entries = RawDir::new(&self.dir, spare);
        let mut n = 0;
        while let Some(entry) = entries.next() {
            // A process that exits while it is listed fails the read: it is gone.
            let entry = entry.ok()?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                n += 1;
            }
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_from_6_2_count_with_stat() {
        assert_eq!(FdCounting::for_release("6.18.44-fc-v657"), FdCounting::Stat);
        assert_eq!(FdCounting::for_release("6.2.0"), FdCounting::Stat);
        assert_eq!(FdCounting::for_release("7.0"), FdCounting::Stat);
        assert_eq!(FdCounting::for_release("6.1.90-lts"), FdCounting::List);
        assert_eq!(
            FdCounting::for_release("5.15.0-105-generic"),
            FdCounting::List
        );
        assert_eq!(FdCounting::for_release("garbage"), FdCounting::List);
    }

    #[test]
    fn both_ways_count_this_process_s_descriptors_as_they_open_and_close() {
        let dir = FdDir::open(std::process::id()).unwrap();
        let mut buf = Vec::new();
        let ways: Vec<FdCounting> = match FdCounting::here() {
            // Listing works on every kernel; the size only on 6.2 and later.
            FdCounting::Stat => vec![FdCounting::Stat, FdCounting::List],
            FdCounting::List => vec![FdCounting::List],
        };
        for how in ways {
            // Other test threads may open files meanwhile: compare with a listing taken by
            // std around ours, and look at a change of 50 we make ourselves.
            let before = dir.count(how, &mut buf).unwrap();
            let files: Vec<File> = (0..50).map(|_| File::open("/dev/null").unwrap()).collect();
            let during = dir.count(how, &mut buf).unwrap();
            drop(files);
            let after = dir.count(how, &mut buf).unwrap();
            assert!(before > 0, "{how:?}");
            assert!(
                during >= before + 45 && during <= before + 55,
                "{how:?}: {before} -> {during}"
            );
            assert!(after + 45 <= during, "{how:?}: {during} -> {after}");
        }
    }

    #[test]
    fn a_gone_process_counts_as_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let dir = FdDir::open(child.id()).unwrap();
        let mut buf = Vec::new();
        assert!(dir.count(FdCounting::List, &mut buf).is_some());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(dir.count(FdCounting::List, &mut buf), None);
        if FdCounting::here() == FdCounting::Stat {
            assert_eq!(dir.count(FdCounting::Stat, &mut buf), None);
        }
    }
}

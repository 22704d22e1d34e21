//! The task scan (memtools-ebpf's scan.rs): an iterator program over every task on the
//! machine, run once per poll, which queues the followed processes whose counters moved.
//!
//! Each run is a fresh iterator made from the program's link (`BPF_ITER_CREATE`) and read to
//! its end; the program writes nothing, so one `read` walks every task. aya makes one iterator
//! of a link and consumes the link doing so, so we keep a duplicate of the link's descriptor
//! for our own use.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use aya::programs::Iter;
use aya::programs::links::FdLink;

use super::load::EbpfError;

/// `BPF_ITER_CREATE`, from linux/bpf.h.
const BPF_ITER_CREATE: libc::c_long = 33;

/// The loaded scan, or none when it was skipped (MEMTOOLS_EBPF_SKIP=scan: to measure it).
pub struct Scan {
    link: Option<OwnedFd>,
    /// A read buffer (the program writes nothing; the kernel wants somewhere to put it).
    buf: [u8; 64],
}

/// `bpf(cmd, attr)` with an attribute of 16 bytes (zero beyond what is set).
fn bpf_call(cmd: libc::c_long, attr: &[u32; 4]) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is live for the call and at least as large as the size passed; the
    // kernel zero-checks bytes beyond the fields it knows.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_ptr(),
            std::mem::size_of_val(attr) as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A duplicate of this process's descriptor for the link `id`, found by the id each link's
/// fdinfo gives. (`BPF_LINK_GET_FD_BY_ID` would do it in one call, but it needs CAP_SYS_ADMIN,
/// which a recorder run with CAP_BPF and CAP_PERFMON, as the systemd unit runs `serve`, lacks.)
/// The caller keeps the link open meanwhile, so the descriptor found cannot be another's.
fn duplicate_link(id: u32) -> std::io::Result<OwnedFd> {
    let wanted = format!("link_id:\t{id}");
    for entry in std::fs::read_dir("/proc/self/fdinfo")? {
        let entry = entry?;
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if info.lines().any(|l| l == wanted) {
            // SAFETY: `fd` is open in this process (the link holding it is alive in the
            // caller) and only borrowed for the duplication.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            return fd.try_clone_to_owned();
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!("no descriptor of this process holds link {id}"),
    ))
}

impl Scan {
    /// Loads the `scan` iterator and links it (an iterator link runs only when read).
    pub fn load(bpf: &mut aya::Ebpf, btf: &aya::Btf, skip: bool) -> Result<Scan, EbpfError> {
        let buf = [0; 64];
        if skip {
            return Ok(Scan { link: None, buf });
        }
        let failed = |what: &'static str, e: aya::programs::ProgramError| EbpfError::Program {
            program: "scan",
            what,
            error: Box::new(e),
        };
        let program: &mut Iter = bpf
            .program_mut("scan")
            .ok_or(EbpfError::MissingMap("scan (program)"))?
            .try_into()
            .map_err(|e| failed("be an iterator", e))?;
        program.load("task", btf).map_err(|e| failed("load", e))?;
        let id = program.attach().map_err(|e| failed("attach", e))?;
        let link = program.take_link(id).map_err(|e| failed("attach", e))?;
        let link = FdLink::try_from(link)
            .map_err(|e| EbpfError::Scan(std::io::Error::other(e.to_string())))?;
        let link_id = link
            .info()
            .map_err(|e| EbpfError::Scan(std::io::Error::other(e.to_string())))?
            .id();
        // Our own reference to the link; aya's goes when `link` is dropped, after this.
        let fd = duplicate_link(link_id).map_err(EbpfError::Scan)?;
        drop(link);
        Ok(Scan {
            link: Some(fd),
            buf,
        })
    }

    /// Walks every task once: the followed processes whose counters moved are queued.
    pub fn run(&mut self) -> std::io::Result<()> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let iter = bpf_call(BPF_ITER_CREATE, &[link.as_raw_fd() as u32, 0, 0, 0])?;
        let mut file = File::from(iter);
        while file.read(&mut self.buf)? > 0 {}
        Ok(())
    }
}

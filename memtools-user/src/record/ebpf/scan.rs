//! The task scan (memtools-ebpf's scan.rs): an iterator program over every task on the
//! machine, run once per poll, which queues the followed processes whose counters moved.
//!
//! Each run is a fresh iterator made from the program's link (`BPF_ITER_CREATE`) and read to
//! its end; the program writes nothing, so one `read` walks every task. aya makes one iterator
//! of a link and consumes the link doing so, so the link is reopened by id for our own use.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use aya::programs::Iter;
use aya::programs::links::FdLink;

use super::load::EbpfError;

/// `BPF_LINK_GET_FD_BY_ID` and `BPF_ITER_CREATE`, from linux/bpf.h.
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
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
        // Our own reference to the link; aya's goes when `link` is dropped.
        let fd = bpf_call(BPF_LINK_GET_FD_BY_ID, &[link_id, 0, 0, 0]).map_err(EbpfError::Scan)?;
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

//! Growth sites: the code paths where a process grew, from user stacks sampled at page faults
//! and at brk/mmap calls that grew it (recorded with eBPF).
//!
//! A site is a stack (innermost frame first) with the samples and bytes attributed to it in a
//! window. The recorder symbolizes stacks while the process is alive and keeps each frame's
//! module build-id and file offset, so a copied session can be symbolized again elsewhere.

mod report;

pub use report::{
    ProcessSites, SHALLOW_STACKS, SiteSummary, flame_graph, folded, is_runtime, named_frame,
    of_measure, shallow, summarize, text,
};

use crate::model::TimeNs;

/// What made the kernel sample a stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteCause {
    /// A page fault: memory touched for the first time.
    Fault,
    /// A brk call that grew the heap.
    Brk,
    /// An mmap call that mapped new memory.
    Mmap,
}

impl SiteCause {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            SiteCause::Fault => "fault",
            SiteCause::Brk => "brk",
            SiteCause::Mmap => "mmap",
        }
    }

    /// Every cause, in the order a report shows them.
    pub const ALL: [SiteCause; 3] = [SiteCause::Fault, SiteCause::Brk, SiteCause::Mmap];

    /// What the bytes of this cause's samples measure: memory made resident (page faults,
    /// sampled) or address space reserved (brk/mmap calls, sampled by bytes). The two are never
    /// added up: a process reserves far more than it touches.
    pub fn measure(self) -> Measure {
        match self {
            SiteCause::Fault => Measure::Resident,
            SiteCause::Brk | SiteCause::Mmap => Measure::Reserved,
        }
    }

    /// Reads a stored name back; None for a name this build does not know.
    pub fn from_name(name: &str) -> Option<SiteCause> {
        match name {
            "fault" => Some(SiteCause::Fault),
            "brk" => Some(SiteCause::Brk),
            "mmap" => Some(SiteCause::Mmap),
            _ => None,
        }
    }
}

/// What a site's bytes are: see [`SiteCause::measure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// Pages faulted in: the process's resident memory grew (a sample stands for the page
    /// size times the sampling period).
    Resident,
    /// Bytes of address space brk and mmap calls reserved, whether touched yet or not.
    Reserved,
}

/// One frame of a sampled stack. An address inside inlined code gives several frames: the
/// inlined functions first (`inlined`), then the function they were inlined into, all with
/// the same address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Frame {
    /// The instruction address in the process.
    pub address: u64,
    /// The file the address was mapped from (the executable, a shared library), when known.
    pub module: Option<String>,
    /// That file's GNU build-id, hex, so it can be found again elsewhere.
    pub build_id: Option<String>,
    /// The address's offset in that file: with the build-id, enough to symbolize it again.
    pub file_offset: Option<u64>,
    /// The function's name (demangled), when the module had symbols.
    pub function: Option<String>,
    /// The source file, when the module had debug information.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

impl Frame {
    /// How the frame reads in a report: the function, else the module and offset, else the
    /// raw address.
    pub fn label(&self) -> String {
        if let Some(f) = &self.function {
            return f.clone();
        }
        match (&self.module, self.file_offset) {
            (Some(m), Some(off)) => {
                let base = m.rsplit('/').next().unwrap_or(m);
                format!("{base}+{off:#x}")
            }
            _ => format!("{:#x}", self.address),
        }
    }

    /// `file:line` when known (the file's last component only).
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_deref()?;
        let base = file.rsplit('/').next().unwrap_or(file);
        Some(match self.line {
            Some(line) => format!("{base}:{line}"),
            None => base.to_string(),
        })
    }
}

/// A sampled stack, innermost frame first.
pub type Stack = Vec<Frame>;

/// Samples and bytes attributed to one stack of one process in one time bucket: what the
/// recorder drains from the kernel and stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteCount {
    /// The start of the time bucket the samples fell in.
    pub time: TimeNs,
    pub cause: SiteCause,
    pub samples: u64,
    /// The bytes the process grew by at these samples (pages faulted in, brk/mmap lengths).
    pub bytes: u64,
}

/// A stack and what one cause attributed to it over a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub stack: Stack,
    pub cause: SiteCause,
    pub samples: u64,
    pub bytes: u64,
}

/// A time window, both ends included; None on either side leaves it open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub start: Option<TimeNs>,
    pub end: Option<TimeNs>,
}

impl Window {
    /// The whole recording.
    pub const ALL: Window = Window {
        start: None,
        end: None,
    };
}

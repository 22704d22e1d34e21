//! Phases: a test harness marks where each test begins and ends, so a leak can be attributed to
//! the tests during which the memory grew.
//!
//! The recorder makes a FIFO in a private temporary directory and gives the recorded command
//! its path in `MEMTOOLS_PHASES`. Any process of the tree writes lines to it: `begin NAME` and
//! `end NAME`. A FIFO needs nothing but `echo` from a shell, and lines under PIPE_BUF (4 KiB)
//! from several writers (parallel test workers) never interleave. The recorder holds it open
//! for reading and writing, so a writer never blocks and the reader never sees end-of-file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The environment variable that carries the FIFO's path to the recorded command.
pub const PHASES_ENV: &str = "MEMTOOLS_PHASES";

/// The longest line kept; anything longer is reported as malformed.
const MAX_LINE: usize = 4096;

/// One line of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseLine<'a> {
    Begin(&'a str),
    End(&'a str),
    /// Not `begin NAME` or `end NAME`; kept to say what was wrong.
    Malformed(&'a str),
}

/// Parses one line (without its newline).
pub fn parse_line(line: &str) -> PhaseLine<'_> {
    let line = line.trim_end_matches('\r');
    let (verb, name) = line.split_once(' ').unwrap_or((line, ""));
    let name = name.trim();
    match verb {
        _ if name.is_empty() => PhaseLine::Malformed(line),
        "begin" => PhaseLine::Begin(name),
        "end" => PhaseLine::End(name),
        _ => PhaseLine::Malformed(line),
    }
}

/// The FIFO and the bytes read from it that do not make a whole line yet.
pub struct PhaseChannel {
    _dir: tempfile::TempDir,
    path: PathBuf,
    fifo: File,
    pending: Vec<u8>,
    chunk: Vec<u8>,
}

impl PhaseChannel {
    /// Makes the FIFO in a new private directory.
    pub fn create() -> io::Result<PhaseChannel> {
        let dir = tempfile::Builder::new().prefix("memtools-").tempdir()?;
        let path = dir.path().join("phases");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(io::Error::from)?;
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)?;
        Ok(PhaseChannel {
            _dir: dir,
            path,
            fifo,
            pending: Vec::new(),
            chunk: vec![0; 8192],
        })
    }

    /// The FIFO's path, for `MEMTOOLS_PHASES`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands every complete line written since the last call to `f`, in order.
    pub fn drain(&mut self, mut f: impl FnMut(PhaseLine<'_>)) {
        loop {
            match self.fifo.read(&mut self.chunk) {
                Ok(0) => break,
                Ok(n) => self.pending.extend_from_slice(&self.chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: nothing more for now. Anything else: no more phases.
                Err(_) => break,
            }
        }
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&self.pending[start..start + nl]);
            if !line.trim().is_empty() {
                f(parse_line(&line));
            }
            start += nl + 1;
        }
        self.pending.drain(..start);
        if self.pending.len() > MAX_LINE {
            let line = String::from_utf8_lossy(&self.pending[..64]).into_owned();
            f(PhaseLine::Malformed(&format!(
                "{line}... (a line over {MAX_LINE} bytes)"
            )));
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_parse_into_phases_or_say_they_are_malformed() {
        assert_eq!(
            parse_line("begin tests/test_a.py::test_x[1-2]"),
            PhaseLine::Begin("tests/test_a.py::test_x[1-2]")
        );
        assert_eq!(
            parse_line("end  spaced name \r"),
            PhaseLine::End("spaced name")
        );
        assert_eq!(parse_line("begin"), PhaseLine::Malformed("begin"));
        assert_eq!(parse_line("start x"), PhaseLine::Malformed("start x"));
    }

    #[test]
    fn the_fifo_delivers_whole_lines_across_reads() {
        let mut ch = PhaseChannel::create().unwrap();
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(ch.path())
            .unwrap();
        w.write_all(b"begin a\nend a\nbeg").unwrap();
        let mut seen = Vec::new();
        ch.drain(|l| seen.push(format!("{l:?}")));
        assert_eq!(seen, ["Begin(\"a\")", "End(\"a\")"]);
        w.write_all(b"in b\nnonsense\n").unwrap();
        seen.clear();
        ch.drain(|l| seen.push(format!("{l:?}")));
        assert_eq!(seen, ["Begin(\"b\")", "Malformed(\"nonsense\")"]);
        let path = ch.path().to_path_buf();
        drop(ch);
        assert!(!path.exists(), "the FIFO is removed with the channel");
    }
}

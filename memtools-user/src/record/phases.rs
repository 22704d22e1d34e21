//! Phases: a test harness marks where each test begins and ends, so a leak can be attributed to
//! the tests during which the memory grew.
//!
//! The recorder makes a FIFO in a private temporary directory and gives the recorded command
//! its path in `MEMTOOLS_PHASES`. Any process of the tree writes lines to it: `begin NAME` and
//! `end NAME`. A FIFO needs nothing but `echo` from a shell, and lines under PIPE_BUF (4 KiB)
//! from several writers (parallel test workers) never interleave. The recorder holds it open
//! for reading and writing, so a writer never blocks on a missing reader and the reader never
//! sees end-of-file; a thread of its own reads it as fast as it is written and stamps each line
//! as it arrives, so a writer never waits for the sampling loop, and keeps at most one line's
//! worth of bytes: a line without end costs nothing but its first bytes, said as malformed.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use memtools::model::TimeNs;

/// The environment variable that carries the FIFO's path to the recorded command.
pub const PHASES_ENV: &str = "MEMTOOLS_PHASES";

/// The longest line kept; anything longer is reported as malformed.
const MAX_LINE: usize = 4096;
/// How much of an overlong line is quoted when it is reported.
const QUOTED: usize = 64;
/// Lines waiting for the recorder; a writer waits (as on a full pipe) beyond this.
const QUEUE: usize = 4096;

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

/// A line as it arrived, with when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseEvent {
    pub at: TimeNs,
    pub kind: PhaseKind,
    /// The phase's name, or the malformed line.
    pub text: String,
}

/// What a line said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseKind {
    Begin,
    End,
    Malformed,
}

/// Splits bytes into lines, keeping at most [`MAX_LINE`] bytes of the current one.
#[derive(Default)]
struct Lines {
    pending: Vec<u8>,
    /// The current line passed MAX_LINE: its start, skipped to its end.
    overlong: Option<Vec<u8>>,
}

impl Lines {
    fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(PhaseKind, String)) {
        while !bytes.is_empty() {
            let (chunk, ended) = match bytes.iter().position(|&b| b == b'\n') {
                Some(nl) => (&bytes[..nl], true),
                None => (bytes, false),
            };
            bytes = &bytes[(chunk.len() + usize::from(ended))..];
            if self.overlong.is_none() {
                self.pending.extend_from_slice(chunk);
                if self.pending.len() > MAX_LINE {
                    self.pending.truncate(QUOTED);
                    self.overlong = Some(std::mem::take(&mut self.pending));
                }
            }
            if !ended {
                continue;
            }
            match self.overlong.take() {
                Some(start) => emit(
                    PhaseKind::Malformed,
                    format!(
                        "{}... (a line over {MAX_LINE} bytes)",
                        String::from_utf8_lossy(&start)
                    ),
                ),
                None => {
                    let line = String::from_utf8_lossy(&self.pending).into_owned();
                    if !line.trim().is_empty() {
                        let (kind, text) = match parse_line(&line) {
                            PhaseLine::Begin(n) => (PhaseKind::Begin, n),
                            PhaseLine::End(n) => (PhaseKind::End, n),
                            PhaseLine::Malformed(l) => (PhaseKind::Malformed, l),
                        };
                        emit(kind, text.to_string());
                    }
                }
            }
            self.pending.clear();
        }
    }
}

/// The FIFO and the thread that reads it.
pub struct PhaseChannel {
    _dir: tempfile::TempDir,
    path: PathBuf,
    events: Receiver<PhaseEvent>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl PhaseChannel {
    /// Makes the FIFO in a new private directory and starts reading it; `now` stamps lines.
    pub fn create(now: impl Fn() -> TimeNs + Send + 'static) -> io::Result<PhaseChannel> {
        let dir = tempfile::Builder::new().prefix("memtools-").tempdir()?;
        let path = dir.path().join("phases");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(io::Error::from)?;
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)?;
        let (tx, events) = sync_channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let reader = std::thread::Builder::new()
            .name("memtools-phases".to_string())
            .spawn(move || read_fifo(fifo, &tx, &stopping, now))?;
        Ok(PhaseChannel {
            _dir: dir,
            path,
            events,
            stop,
            reader: Some(reader),
        })
    }

    /// The FIFO's path, for `MEMTOOLS_PHASES`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lines that arrived since the last call, in order.
    pub fn drain(&mut self) -> Vec<PhaseEvent> {
        self.events.try_iter().collect()
    }

    /// Reads what is left in the FIFO, stops the reader and returns the lines not drained.
    pub fn finish(&mut self) -> Vec<PhaseEvent> {
        self.stop.store(true, Ordering::SeqCst);
        let mut out = Vec::new();
        if let Some(reader) = self.reader.take() {
            // The reader may wait on a full queue: keep taking while it finishes.
            while !reader.is_finished() {
                out.extend(self.events.try_iter());
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = reader.join();
        }
        out.extend(self.events.try_iter());
        out
    }
}

impl Drop for PhaseChannel {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The reader thread: waits for bytes (waking a few times a second to see `stop`), splits
/// them into lines stamped on arrival, and ends once stopped and the FIFO is empty.
fn read_fifo(
    mut fifo: File,
    tx: &SyncSender<PhaseEvent>,
    stop: &AtomicBool,
    now: impl Fn() -> TimeNs,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut lines = Lines::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut got_any = false;
        loop {
            match fifo.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    got_any = true;
                    let at = now();
                    let mut closed = false;
                    lines.feed(&chunk[..n], |kind, text| {
                        closed |= tx.send(PhaseEvent { at, kind, text }).is_err();
                    });
                    if closed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock: nothing more for now. Anything else: no more phases.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        if stopping && !got_any {
            return;
        }
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(50u16));
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

    fn wait_for(ch: &mut PhaseChannel, n: usize) -> Vec<(PhaseKind, String)> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.len() < n && std::time::Instant::now() < deadline {
            seen.extend(ch.drain().into_iter().map(|e| (e.kind, e.text)));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        seen
    }

    #[test]
    fn the_fifo_delivers_whole_lines_across_reads() {
        let mut ch = PhaseChannel::create(|| 7).unwrap();
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(ch.path())
            .unwrap();
        w.write_all(b"begin a\nend a\nbeg").unwrap();
        let seen = wait_for(&mut ch, 2);
        assert_eq!(
            seen,
            [(PhaseKind::Begin, "a".into()), (PhaseKind::End, "a".into())]
        );
        w.write_all(b"in b\nnonsense\n").unwrap();
        let seen = wait_for(&mut ch, 2);
        assert_eq!(
            seen,
            [
                (PhaseKind::Begin, "b".into()),
                (PhaseKind::Malformed, "nonsense".into())
            ]
        );
        let path = ch.path().to_path_buf();
        drop(ch);
        assert!(!path.exists(), "the FIFO is removed with the channel");
    }

    #[test]
    fn a_line_without_end_costs_its_first_bytes_and_never_blocks_the_writer() {
        let mut ch = PhaseChannel::create(|| 0).unwrap();
        let path = ch.path().to_path_buf();
        // Five megabytes without a newline, then a good line: the writer finishes at once
        // (the reader keeps up) and only the line's start is kept to say it was malformed.
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            w.write_all(&vec![b'x'; 5 << 20]).unwrap();
            w.write_all(b"\nbegin after\n").unwrap();
        });
        let seen = wait_for(&mut ch, 2);
        writer.join().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].0, PhaseKind::Malformed);
        assert!(seen[0].1.len() < 200, "{}", seen[0].1.len());
        assert!(seen[0].1.ends_with("(a line over 4096 bytes)"));
        assert_eq!(seen[1], (PhaseKind::Begin, "after".into()));
        assert_eq!(ch.finish(), vec![]);
    }
}

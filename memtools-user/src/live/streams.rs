//! Keeping the terminal for the view while something else would write to it.
//!
//! While the view is up, whatever would reach the terminal through the standard streams (the
//! recorded command's output, the recorder's own messages) goes to a temporary file instead,
//! and is shown when the view closes, in the order it was written. A recorded command reads
//! /dev/null rather than the keys meant for the view. Only streams that are the terminal are
//! touched: output already redirected to a file or a pipe goes there as before.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

/// One of our standard streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    In,
    Out,
    Err,
}

impl Stream {
    fn point_at(self, fd: impl AsFd) -> io::Result<()> {
        match self {
            Stream::In => nix::unistd::dup2_stdin(fd),
            Stream::Out => nix::unistd::dup2_stdout(fd),
            Stream::Err => nix::unistd::dup2_stderr(fd),
        }
        .map_err(io::Error::from)
    }
}

/// Our standard streams, pointed away from the terminal, and what was written meanwhile.
pub struct Capture {
    /// Our own streams as they were (close-on-exec: a command started meanwhile does not get
    /// them), restored by [`Capture::restore`].
    saved: Vec<(Stream, OwnedFd)>,
    /// The captured output, read through a handle of its own (the writers' offset is theirs).
    reader: Option<File>,
    /// Where the captured output is shown: stdout, or stderr when only it was the terminal.
    to: Stream,
}

impl Capture {
    /// Points stdout and stderr (those that are the terminal) at one temporary file, and stdin
    /// (when `stdin` and it is the terminal) at /dev/null. Processes started from now on, the
    /// recorded command among them, inherit these.
    pub fn redirect(stdin: bool) -> io::Result<Capture> {
        let out = io::stdout().is_terminal();
        let err = io::stderr().is_terminal();
        let mut capture = Capture {
            saved: Vec::new(),
            reader: None,
            to: if out || !err {
                Stream::Out
            } else {
                Stream::Err
            },
        };
        if out || err {
            // Created with O_EXCL under a random name, mode 0600: nobody else's file is followed.
            let file = tempfile::NamedTempFile::new()?;
            capture.reader = Some(file.reopen()?);
            let writer = file.as_file().try_clone()?;
            // Unlinked now: it vanishes with the last handle, whatever happens to us.
            drop(file);
            std::io::stdout().flush()?;
            std::io::stderr().flush()?;
            for (stream, is_tty) in [(Stream::Out, out), (Stream::Err, err)] {
                if is_tty {
                    capture.save(stream)?;
                    stream.point_at(&writer)?;
                }
            }
        }
        if stdin && io::stdin().is_terminal() {
            let null = File::open("/dev/null")?;
            capture.save(Stream::In)?;
            Stream::In.point_at(&null)?;
        }
        Ok(capture)
    }

    fn save(&mut self, stream: Stream) -> io::Result<()> {
        let fd = match stream {
            Stream::In => io::stdin().as_fd().try_clone_to_owned()?,
            Stream::Out => io::stdout().as_fd().try_clone_to_owned()?,
            Stream::Err => io::stderr().as_fd().try_clone_to_owned()?,
        };
        self.saved.push((stream, fd));
        Ok(())
    }

    /// Gives stdin back (the recorder tells a terminal's Ctrl-C by it), leaving the command's
    /// as it got it.
    pub fn restore_stdin(&mut self) {
        self.restore_where(|s| s == Stream::In);
    }

    /// Gives every stream back; processes already started keep what they got.
    pub fn restore(&mut self) {
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        self.restore_where(|_| true);
    }

    fn restore_where(&mut self, which: impl Fn(Stream) -> bool) {
        self.saved.retain(|(stream, fd)| {
            if !which(*stream) {
                return true;
            }
            // Nothing better to do if it fails: the stream stays where it was pointed.
            let _ = stream.point_at(fd);
            false
        });
    }

    /// Shows what was written since the last call, on the stream it was captured from. Call it
    /// once the streams are restored.
    pub fn show_new(&mut self) -> io::Result<u64> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(0);
        };
        let mut buf = [0u8; 64 * 1024];
        let mut shown = 0;
        let mut out: Box<dyn Write> = match self.to {
            Stream::Err => Box::new(io::stderr().lock()),
            _ => Box::new(io::stdout().lock()),
        };
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            shown += n as u64;
        }
        out.flush()?;
        Ok(shown)
    }
}

impl Drop for Capture {
    /// Whatever way the program ends, the streams come back and nothing captured is lost.
    fn drop(&mut self) {
        self.restore();
        let _ = self.show_new();
    }
}

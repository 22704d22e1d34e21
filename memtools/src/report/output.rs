//! Writing reports, plots and exports where the user asked, safely even as root in a directory
//! others can write: never through a symbolic link, never into something that is not a regular
//! file, never half a file at the path. Each file is written to a new name beside its target
//! (created exclusively, not following links), synced, then renamed over it, so readers see the
//! old file or the whole new one, and a planted link is replaced, never followed. Plot
//! directories are opened without following links and written through their descriptor.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Why a file could not be written; always names it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "{path}: a symbolic link; memtools does not write through links (remove it or choose another path)"
    )]
    Link { path: PathBuf },
    #[error("{path}: exists and is not a regular file; choose another path")]
    NotAFile { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open directory, and the path it was opened by (for messages).
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The directory a path's file goes in, and the file's name there.
fn split(path: &Path) -> Result<(PathBuf, &std::ffi::OsStr), WriteError> {
    let name = path.file_name().ok_or_else(|| WriteError::NotAFile {
        path: path.to_path_buf(),
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// What is at `name` in `dir`, not following a link: None when nothing is.
fn what_is_there(dir: &OwnedFd, name: &std::ffi::OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Refuses a target that is a link or not a regular file.
fn refuse(kind: Option<FileType>, path: &Path) -> Result<(), WriteError> {
    match kind {
        None | Some(FileType::RegularFile) => Ok(()),
        Some(FileType::Symlink) => Err(WriteError::Link {
            path: path.to_path_buf(),
        }),
        Some(_) => Err(WriteError::NotAFile {
            path: path.to_path_buf(),
        }),
    }
}

impl Dir {
    /// Opens an existing directory (its own path may go through links the user chose).
    pub fn open(path: &Path) -> Result<Dir, WriteError> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_at(path)(e.into()))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens the directory `path`, creating it if missing; refuses a link or a non-directory
    /// there (a planted link would send the files elsewhere).
    pub fn open_or_create(path: &Path) -> Result<Dir, WriteError> {
        let (parent, name) = split(path)?;
        let parent = Dir::open(&parent)?;
        match rustix::fs::mkdirat(&parent.fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io_at(path)(e.into())),
        }
        match rustix::fs::openat(
            &parent.fd,
            name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Dir {
                fd,
                path: path.to_path_buf(),
            }),
            Err(rustix::io::Errno::LOOP) => Err(WriteError::Link {
                path: path.to_path_buf(),
            }),
            Err(rustix::io::Errno::NOTDIR) => {
                let kind = what_is_there(&parent.fd, name).map_err(io_at(path))?;
                refuse(kind, path)?;
                Err(WriteError::NotAFile {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => Err(io_at(path)(e.into())),
        }
    }

    /// Checks that a file called `name` could be written here: the target is not a link or a
    /// non-file, and a new file can be created beside it (made and removed at once).
    pub fn check(&self, name: &std::ffi::OsStr) -> Result<(), WriteError> {
        let target = self.path.join(name);
        refuse(
            what_is_there(&self.fd, name).map_err(io_at(&target))?,
            &target,
        )?;
        drop(AtomicFile::create_in(self, name)?);
        Ok(())
    }

    /// Writes a whole file called `name` in this directory.
    pub fn write(&self, name: &std::ffi::OsStr, bytes: &[u8]) -> Result<(), WriteError> {
        let mut f = AtomicFile::create_in(self, name)?;
        f.write_all(bytes).map_err(io_at(&self.path.join(name)))?;
        f.commit()
    }
}

/// A file being written under a temporary name, renamed over its target by
/// [`AtomicFile::commit`]; removed if dropped before.
pub struct AtomicFile {
    dir: OwnedFd,
    temp: PathBuf,
    name: std::ffi::OsString,
    target: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Starts writing `path`: checks what is there and creates the temporary file beside it.
    pub fn create(path: &Path) -> Result<AtomicFile, WriteError> {
        let (parent, name) = split(path)?;
        let dir = Dir::open(&parent)?;
        AtomicFile::create_in(&dir, name)
    }

    fn create_in(dir: &Dir, name: &std::ffi::OsStr) -> Result<AtomicFile, WriteError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let target = dir.path.join(name);
        refuse(
            what_is_there(&dir.fd, name).map_err(io_at(&target))?,
            &target,
        )?;
        let mut temp = std::ffi::OsString::from(".");
        temp.push(name);
        temp.push(format!(
            ".{}-{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let fd = rustix::fs::openat(
            &dir.fd,
            &temp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| io_at(&target)(e.into()))?;
        let dir_fd = dir
            .fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_at(&target))?;
        Ok(AtomicFile {
            dir: dir_fd,
            temp: PathBuf::from(temp),
            name: name.to_os_string(),
            target,
            file: Some(File::from(fd)),
        })
    }

    /// The path being written, for messages.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Syncs the new file and renames it over the target, which must still not be a link or a
    /// non-file.
    pub fn commit(mut self) -> Result<(), WriteError> {
        let file = self.file.take().ok_or_else(|| WriteError::Io {
            path: self.target.clone(),
            source: io::Error::other("already committed"),
        })?;
        file.sync_all().map_err(io_at(&self.target))?;
        drop(file);
        let kind = what_is_there(&self.dir, &self.name).map_err(io_at(&self.target))?;
        refuse(kind, &self.target)?;
        rustix::fs::renameat(&self.dir, &self.temp, &self.dir, &self.name)
            .map_err(|e| io_at(&self.target)(e.into()))?;
        // Renamed: nothing left to remove.
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = rustix::fs::unlinkat(&self.dir, &self.temp, AtFlags::empty());
        }
    }
}

/// Checks, before anything is recorded, that `path` could be written: not a link or a
/// non-file, in a directory where a new file can be created. Changes nothing.
pub fn check(path: &Path) -> Result<(), WriteError> {
    let (parent, name) = split(path)?;
    Dir::open(&parent)?.check(name)
}

/// Writes a whole file safely (see the module's doc).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(io_at(path))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_replaces_a_regular_one_and_never_follows_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("report.md");
        std::fs::write(&target, b"old").unwrap();
        write(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");

        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("link.md");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(matches!(check(&link), Err(WriteError::Link { .. })));
        let err = write(&link, b"oops").unwrap_err();
        assert!(err.to_string().contains("link.md"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");

        let fifo = dir.path().join("fifo");
        std::fs::create_dir(&fifo).unwrap();
        assert!(matches!(
            write(&fifo, b"x"),
            Err(WriteError::NotAFile { .. })
        ));
        // Nothing temporary is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
    }

    #[test]
    fn a_planted_directory_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let plots = dir.path().join("leaks.plots");
        std::os::unix::fs::symlink(elsewhere.path(), &plots).unwrap();
        assert!(matches!(
            Dir::open_or_create(&plots),
            Err(WriteError::Link { .. })
        ));
        let real = Dir::open_or_create(&dir.path().join("real.plots")).unwrap();
        real.write("a.svg".as_ref(), b"<svg/>").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("real.plots/a.svg")).unwrap(),
            b"<svg/>"
        );
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    }
}

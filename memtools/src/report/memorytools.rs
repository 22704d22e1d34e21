//! memorytools' CSV export: import it as sessions, and export ours in it so its tools read them.
//!
//! The format: a header `Process ID,Process Name,Time,Memory Usage`, then one row per sample
//! with the time as naive wall-clock time (`2024-04-25 16:08:25.210648`) and the memory as
//! the virtual size in bytes (psutil's `vms`). The time zone is not recorded; we read and write
//! it as UTC so a round trip gives back the same text.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};
use flate2::read::MultiGzDecoder;

use crate::model::{
    BackendKind, Metric, Metrics, NS_PER_SEC, NewSession, ProcessInfo, ProcessKey, Sample, TimeNs,
};
use crate::store::{ForEachError, ImportBatch, ImportFailure, Store, StoreError};

/// The header memorytools writes, in its order.
pub const COLUMNS: [&str; 4] = ["Process ID", "Process Name", "Time", "Memory Usage"];
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";

/// Why a file could not be imported; always names the file, and the line and field when the
/// problem is in the data.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file}:{line}: field `{field}`: {message}")]
    Field {
        file: PathBuf,
        line: u64,
        field: &'static str,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    Line {
        file: PathBuf,
        line: u64,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The longest record (a row, up to its newline outside quotes) read from a file:
/// memorytools' rows are under a hundred bytes, so anything this long is not one, and holding
/// it whole would cost unbounded memory (`/dev/zero` is one endless line).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// The most processes one file may hold; each costs a little memory while it is read.
pub const MAX_PROCESSES: usize = 1_000_000;

/// Imports memorytools CSV files (plain or gzip-compressed), each as a new session, all or
/// nothing: one transaction for them all. Returns the new sessions' ids, in order.
pub fn import_files(store: &mut Store, paths: &[PathBuf]) -> Result<Vec<i64>, ImportError> {
    let mut batch = store.import_batch()?;
    let mut ids = Vec::with_capacity(paths.len());
    for path in paths {
        ids.push(import_into(&mut batch, path)?);
    }
    batch.commit()?;
    Ok(ids)
}

/// Imports one memorytools CSV file as a new session, all or nothing, and returns its id.
pub fn import_file(store: &mut Store, path: &Path) -> Result<i64, ImportError> {
    let ids = import_files(store, &[path.to_path_buf()])?;
    ids.first().copied().ok_or_else(|| ImportError::Line {
        file: path.to_path_buf(),
        line: 1,
        message: "nothing imported".to_string(),
    })
}

fn import_into(batch: &mut ImportBatch<'_>, path: &Path) -> Result<i64, ImportError> {
    let read_err = |source| ImportError::Read {
        file: path.to_path_buf(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(read_err)?);
    // Sniff gzip's magic bytes rather than trust the file name.
    let gz = file
        .fill_buf()
        .map_err(read_err)?
        .starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let input = BoundedRecords::new(input);
    let session = NewSession {
        host: String::new(),
        kernel: String::new(),
        backend: BackendKind::MemorytoolsImport,
        backend_reason: "imported from memorytools' CSV export".to_string(),
        interval_ns: None,
        command: None,
        source: Some(path.display().to_string()),
        start: 0,
        monotonic_offset_ns: None,
        mem_total: None,
        threads_max: None,
        pid_max: None,
    };
    batch
        .import(&session, |importer| parse(path, input, importer))
        .map_err(|e| match e {
            ImportFailure::Store(e) => ImportError::Store(e),
            ImportFailure::Input(e) => e,
        })
}

/// A record longer than [`MAX_RECORD_BYTES`], starting at this line.
#[derive(Debug, thiserror::Error)]
#[error("a row longer than {} MiB (memorytools' rows are under 100 bytes: is this its CSV export?)", MAX_RECORD_BYTES >> 20)]
struct RecordTooLong {
    line: u64,
}

/// Passes a CSV stream through, failing as soon as one record grows past
/// [`MAX_RECORD_BYTES`], so memory stays bounded whatever the input.
struct BoundedRecords<R> {
    inner: R,
    in_quotes: bool,
    len: usize,
    line: u64,
    record_line: u64,
}

impl<R: Read> BoundedRecords<R> {
    fn new(inner: R) -> Self {
        BoundedRecords {
            inner,
            in_quotes: false,
            len: 0,
            line: 1,
            record_line: 1,
        }
    }
}

impl<R: Read> Read for BoundedRecords<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' => {
                    self.line += 1;
                    if !self.in_quotes {
                        self.len = 0;
                        self.record_line = self.line;
                        continue;
                    }
                }
                _ => {}
            }
            self.len += 1;
            if self.len > MAX_RECORD_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    RecordTooLong {
                        line: self.record_line,
                    },
                ));
            }
        }
        Ok(n)
    }
}

fn parse(
    path: &Path,
    input: impl Read,
    importer: &mut crate::store::Importer<'_>,
) -> Result<(), ImportError> {
    let file = || path.to_path_buf();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    let mut index = [0usize; 4];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot = headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| ImportError::Field {
                file: file(),
                line: 1,
                field: name,
                message: format!(
                    "missing column (the header is `{}`; memorytools writes `{}`)",
                    headers.iter().collect::<Vec<_>>().join(","),
                    COLUMNS.join(",")
                ),
            })?;
    }
    let mut processes: HashMap<(u32, String), i64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    while reader
        .read_record(&mut record)
        .map_err(|e| csv_error(path, e))?
    {
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(index[i]).unwrap_or("");
        let bad = |i: usize, message: String| ImportError::Field {
            file: file(),
            line,
            field: COLUMNS[i],
            message,
        };
        let pid: u32 = field(0)
            .parse()
            .map_err(|_| bad(0, format!("`{}` is not a process id", field(0))))?;
        let name = field(1);
        let time = parse_time(field(2)).ok_or_else(|| {
            bad(
                2,
                format!(
                    "`{}` is not a time like `2024-04-25 16:08:25.210648`",
                    field(2)
                ),
            )
        })?;
        let memory: u64 = field(3)
            .parse()
            .map_err(|_| bad(3, format!("`{}` is not a number of bytes", field(3))))?;
        let id = match processes.get(&(pid, name.to_string())) {
            Some(&id) => id,
            None => {
                if processes.len() >= MAX_PROCESSES {
                    return Err(ImportError::Line {
                        file: file(),
                        line,
                        message: format!(
                            "more than {MAX_PROCESSES} processes in one file; memorytools records a few dozen"
                        ),
                    });
                }
                let info = ProcessInfo {
                    key: ProcessKey {
                        pid,
                        start_time: time as u64,
                    },
                    ppid: None,
                    name: name.to_string(),
                    cmdline: String::new(),
                };
                let id = importer
                    .add_process(&info)
                    .map_err(|e| sql_error(path, line, e))?;
                processes.insert((pid, name.to_string()), id);
                id
            }
        };
        let sample = Sample {
            time,
            metrics: Metrics {
                vm_size: Some(memory),
                ..Metrics::default()
            },
        };
        importer
            .add_sample(id, &sample)
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => ImportError::Line {
                    file: file(),
                    line,
                    message: format!(
                        "a second sample of pid {pid} at the same time `{}`",
                        field(2)
                    ),
                },
                _ => sql_error(path, line, e),
            })?;
        rows += 1;
    }
    if rows == 0 {
        return Err(ImportError::Line {
            file: file(),
            line: 1,
            message: "no samples after the header".to_string(),
        });
    }
    Ok(())
}

fn sql_error(path: &Path, line: u64, e: rusqlite::Error) -> ImportError {
    ImportError::Line {
        file: path.to_path_buf(),
        line,
        message: format!("cannot store this row: {e}"),
    }
}

fn csv_error(path: &Path, e: csv::Error) -> ImportError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => {
            match source
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<RecordTooLong>())
            {
                Some(long) => ImportError::Line {
                    file: path.to_path_buf(),
                    line: long.line,
                    message: long.to_string(),
                },
                None => ImportError::Read {
                    file: path.to_path_buf(),
                    source,
                },
            }
        }
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => ImportError::Line {
            file: path.to_path_buf(),
            line,
            message: format!("{len} fields where the header has {expected_len}"),
        },
        csv::ErrorKind::Utf8 { .. } => ImportError::Line {
            file: path.to_path_buf(),
            line,
            message: "not valid UTF-8 text".to_string(),
        },
        other => ImportError::Line {
            file: path.to_path_buf(),
            line,
            message: format!("{other:?}"),
        },
    }
}

/// Parses memorytools' naive timestamp as UTC nanoseconds.
pub fn parse_time(s: &str) -> Option<TimeNs> {
    let t = NaiveDateTime::parse_from_str(s, TIME_FORMAT).ok()?;
    t.and_utc().timestamp_nanos_opt()
}

/// Formats a time the way memorytools writes it (microseconds, no zone).
pub fn format_time(t: TimeNs) -> String {
    let secs = t.div_euclid(NS_PER_SEC);
    let nanos = t.rem_euclid(NS_PER_SEC) as u32;
    DateTime::from_timestamp(secs, nanos)
        .map(|d| d.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

/// Writes a session in memorytools' CSV format: virtual size per sample (or `metric`, in the
/// `Memory Usage` column, for other tools to plot); samples without it (a backend that could
/// not see it) are left out.
pub fn export(
    store: &Store,
    session: i64,
    metric: Option<Metric>,
    out: &mut dyn Write,
) -> Result<u64, ForEachError> {
    let metric = metric.unwrap_or(Metric::VmSize);
    // Python's csv module, which memorytools writes with, ends lines with CRLF.
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    csv.write_record(COLUMNS).map_err(io::Error::from)?;
    let mut rows = 0;
    store.for_each_sample(session, |p, s| {
        if let Some(vm) = s.metrics.get(metric) {
            csv.write_record([
                p.info.key.pid.to_string().as_str(),
                p.info.name.as_str(),
                format_time(s.time).as_str(),
                vm.to_string().as_str(),
            ])
            .map_err(io::Error::from)?;
            rows += 1;
        }
        Ok(())
    })?;
    csv.flush()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips_at_microseconds() {
        let t = parse_time("2024-04-25 16:08:25.210648").unwrap();
        assert_eq!(t % 1000, 0);
        assert_eq!(format_time(t), "2024-04-25 16:08:25.210648");
        assert_eq!(
            parse_time("2024-04-25 16:08:25"),
            Some(1_714_061_305 * NS_PER_SEC)
        );
        assert_eq!(parse_time("25/04/2024 16:08"), None);
    }
}

//! What users read: tables, JSON, exports and imports in other tools' formats.

pub mod jsonl;
pub mod junit;
pub mod markdown;
pub mod memorytools;
pub mod summary;
pub mod text;
pub mod verdicts;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::detect::SessionReport;

/// The formats `--report FORMAT:PATH` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// JUnit XML, for CI test reporters.
    Junit,
    /// The `detect --format json` object.
    Json,
    /// A Markdown summary with plots beside it.
    Markdown,
}

/// One `--report FORMAT:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSpec {
    pub format: ReportFormat,
    pub path: PathBuf,
}

impl FromStr for ReportSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (format, path) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not FORMAT:PATH (like junit:leaks.xml)"))?;
        let format = match format {
            "junit" => ReportFormat::Junit,
            "json" => ReportFormat::Json,
            "markdown" | "md" => ReportFormat::Markdown,
            other => {
                return Err(format!(
                    "unknown report format `{other}` (junit, json or markdown)"
                ));
            }
        };
        if path.is_empty() {
            return Err(format!("`{s}`: the report needs a path after the colon"));
        }
        Ok(ReportSpec {
            format,
            path: PathBuf::from(path),
        })
    }
}

impl fmt::Display for ReportSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = match self.format {
            ReportFormat::Junit => "junit",
            ReportFormat::Json => "json",
            ReportFormat::Markdown => "markdown",
        };
        write!(f, "{format}:{}", self.path.display())
    }
}

/// A report that could not be written, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the {spec} report")]
pub struct ReportError {
    spec: String,
    #[source]
    source: std::io::Error,
}

impl ReportSpec {
    /// Checks that the report's file can be written, before a long recording makes it matter.
    pub fn check_writable(&self) -> Result<(), ReportError> {
        let err = |source| ReportError {
            spec: self.to_string(),
            source,
        };
        if self.path.is_dir() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map(drop)
            .map_err(err)
    }

    /// Writes the report (and, for Markdown, the plots beside it).
    pub fn write(&self, report: &SessionReport) -> Result<(), ReportError> {
        let err = |source| ReportError {
            spec: self.to_string(),
            source,
        };
        let text = match self.format {
            ReportFormat::Junit => {
                let mut buf = Vec::new();
                junit::write(report, &mut buf).map_err(err)?;
                buf
            }
            ReportFormat::Json => verdicts::json(report)
                .map_err(|e| err(e.into()))?
                .into_bytes(),
            ReportFormat::Markdown => {
                let mut failed = None;
                let text = markdown::render(report, &mut |r| {
                    let path = markdown::svg_path(&self.path, r);
                    let written = path
                        .parent()
                        .map_or(Ok(()), std::fs::create_dir_all)
                        .and_then(|()| std::fs::write(&path, markdown::svg(r)));
                    match written {
                        Ok(()) => {
                            let base = self.path.parent().unwrap_or(std::path::Path::new(""));
                            let rel = path.strip_prefix(base).unwrap_or(&path);
                            Some(rel.display().to_string())
                        }
                        Err(e) => {
                            failed.get_or_insert(e);
                            None
                        }
                    }
                });
                if let Some(e) = failed {
                    return Err(err(e));
                }
                text.into_bytes()
            }
        };
        std::fs::write(&self.path, text).map_err(err)
    }
}

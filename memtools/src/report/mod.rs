//! What users read: tables, JSON, exports and imports in other tools' formats.

pub mod jsonl;
pub mod junit;
pub mod markdown;
pub mod memorytools;
pub mod output;
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
#[error("cannot write the {spec} report: {source}")]
pub struct ReportError {
    spec: String,
    #[source]
    source: output::WriteError,
}

impl ReportSpec {
    fn err(&self) -> impl FnOnce(output::WriteError) -> ReportError + '_ {
        move |source| ReportError {
            spec: self.to_string(),
            source,
        }
    }

    /// Checks that the report's file (and a Markdown report's plot directory) can be written,
    /// before a long recording makes it matter. Changes nothing: a link or a non-file there is
    /// refused, and the directory must take a new file.
    pub fn check_writable(&self) -> Result<(), ReportError> {
        output::check(&self.path).map_err(self.err())?;
        if self.format == ReportFormat::Markdown {
            let plots = markdown::plots_dir(&self.path);
            match std::fs::symlink_metadata(&plots) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.err()(output::WriteError::Link { path: plots }));
                }
                Ok(m) if !m.is_dir() => {
                    return Err(self.err()(output::WriteError::NotAFile { path: plots }));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes the report (and, for Markdown, the plots beside it, first), each file whole.
    pub fn write(&self, report: &SessionReport) -> Result<(), ReportError> {
        let io = |e: std::io::Error| output::WriteError::Io {
            path: self.path.clone(),
            source: e,
        };
        let text = match self.format {
            ReportFormat::Junit => {
                let mut buf = Vec::new();
                junit::write(report, &mut buf)
                    .map_err(io)
                    .map_err(self.err())?;
                buf
            }
            ReportFormat::Json => verdicts::json(report)
                .map_err(|e| io(e.into()))
                .map_err(self.err())?
                .into_bytes(),
            ReportFormat::Markdown => self.markdown(report)?.into_bytes(),
        };
        output::write(&self.path, &text).map_err(self.err())
    }

    /// The Markdown text, its plots written into their directory (opened without following a
    /// link) as it goes.
    fn markdown(&self, report: &SessionReport) -> Result<String, ReportError> {
        let plots_dir = markdown::plots_dir(&self.path);
        let mut dir: Option<output::Dir> = None;
        let mut failed = None;
        let text = markdown::render(report, &mut |r| {
            if failed.is_some() {
                return None;
            }
            let written = match &dir {
                Some(d) => Ok(d),
                None => output::Dir::open_or_create(&plots_dir).map(|d| &*dir.insert(d)),
            }
            .and_then(|d| {
                let name = markdown::svg_name(r);
                d.write(name.as_ref(), markdown::svg(r).as_bytes())
                    .map(|()| name)
            });
            match written {
                Ok(name) => {
                    let base = self.path.parent().unwrap_or(std::path::Path::new(""));
                    let path = plots_dir.join(name);
                    let rel = path.strip_prefix(base).unwrap_or(&path);
                    Some(rel.display().to_string())
                }
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        match failed {
            Some(e) => Err(self.err()(e)),
            None => Ok(text),
        }
    }
}

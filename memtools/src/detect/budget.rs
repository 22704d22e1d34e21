//! Peak budgets: the most memory a process may reach, whatever its verdict.

use serde::Serialize;

/// A peak a process must stay under (`--fail-on-peak SIZE` or `NAME=SIZE`), like
/// pytest-memray's `limit_memory`: a run that needs more memory than its budget fails, leak or
/// not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeakBudget {
    /// The process name it applies to; `None` for every process without a budget of its own.
    pub name: Option<String>,
    pub bytes: u64,
}

impl PeakBudget {
    /// The budget for a process name: its own, else the one for every process.
    pub fn for_name(budgets: &[PeakBudget], name: &str) -> Option<u64> {
        budgets
            .iter()
            .find(|b| b.name.as_deref() == Some(name))
            .or_else(|| budgets.iter().find(|b| b.name.is_none()))
            .map(|b| b.bytes)
    }

    /// Parses `SIZE` or `NAME=SIZE`, the size by `parse_size` (the caller's unit parser).
    pub fn parse(
        s: &str,
        parse_size: impl Fn(&str) -> Result<u64, String>,
    ) -> Result<Self, String> {
        match s.rsplit_once('=') {
            Some((name, size)) if !name.is_empty() => Ok(PeakBudget {
                name: Some(name.to_string()),
                bytes: parse_size(size)?,
            }),
            Some(_) => Err(format!(
                "`{s}`: a name goes before the `=` (like worker=2GiB)"
            )),
            None => Ok(PeakBudget {
                name: None,
                bytes: parse_size(s)?,
            }),
        }
    }
}

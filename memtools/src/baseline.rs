//! Baselines: this run against an earlier run of the same command, process by process (matched
//! by name, since pids differ between runs), so a regression is reported even when neither run
//! alone looks like a leak, as pytest-memray's --fail-on-increase does for Python alone.

use std::collections::HashMap;

use serde::Serialize;

use crate::analysis::{Verdict, format};
use crate::detect::SessionReport;

/// A peak grows by at least this fraction (and [`MIN_PEAK_GROWTH`]) to be a regression.
const PEAK_FRACTION: f64 = 0.10;
/// ... and by at least this many bytes, so small processes' jitter is not reported.
const MIN_PEAK_GROWTH: u64 = 4 << 20;

/// One process name's figures in a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    pub peak: u64,
    /// The slope of the evidence (bytes/s); 0 when there was none.
    pub slope_bytes_per_s: f64,
    pub leak: bool,
}

/// A process that got worse than in the baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Regression {
    pub name: String,
    pub before: Figures,
    pub now: Figures,
}

impl Regression {
    /// "tdcsarvControl peak 3.1 GiB -> 8 GiB, slope 0 B/s -> 12 MiB/s".
    pub fn words(&self) -> String {
        format!(
            "{} peak {} -> {}, slope {} -> {}{}",
            self.name,
            format::bytes(self.before.peak as f64),
            format::bytes(self.now.peak as f64),
            format::rate(self.before.slope_bytes_per_s),
            format::rate(self.now.slope_bytes_per_s),
            if self.now.leak && !self.before.leak {
                " (now a leak)"
            } else {
                ""
            }
        )
    }
}

/// The outcome of comparing with a baseline session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub baseline_session: i64,
    pub regressions: Vec<Regression>,
}

/// Per process name: the largest peak and slope among its processes, and whether any leaked.
fn figures(report: &SessionReport) -> HashMap<&str, Figures> {
    let mut out: HashMap<&str, Figures> = HashMap::new();
    for r in &report.processes {
        let f = out.entry(r.process.info.name.as_str()).or_default();
        f.peak = f.peak.max(r.peak);
        if let Some(e) = r.analysis.evidence {
            f.slope_bytes_per_s = f.slope_bytes_per_s.max(e.slope_bytes_per_s);
        }
        f.leak |= r.verdict() == Verdict::Leak;
    }
    out
}

/// The regressions of `now` against `before`: a process (by name) whose peak grew by at least
/// 10 % and 4 MiB, or that leaks now and did not then. Names new in this run are not compared.
pub fn compare(now: &SessionReport, before: &SessionReport) -> Comparison {
    let base = figures(before);
    let mut regressions: Vec<Regression> = figures(now)
        .into_iter()
        .filter_map(|(name, now)| {
            let before = *base.get(name)?;
            let peak_grew = now.peak as f64 > before.peak as f64 * (1.0 + PEAK_FRACTION)
                && now.peak.saturating_sub(before.peak) >= MIN_PEAK_GROWTH;
            let newly_leaking = now.leak && !before.leak;
            (peak_grew || newly_leaking).then(|| Regression {
                name: name.to_string(),
                before,
                now,
            })
        })
        .collect();
    regressions.sort_by(|a, b| {
        let growth = |r: &Regression| r.now.peak as f64 - r.before.peak as f64;
        growth(b).total_cmp(&growth(a)).then(a.name.cmp(&b.name))
    });
    Comparison {
        baseline_session: before.session.id,
        regressions,
    }
}

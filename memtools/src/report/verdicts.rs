//! `detect`'s reports: a table in words for people, one JSON object for machines.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Cell, CellAlignment, Color, ContentArrangement, Table};
use serde::Serialize;

use super::text::SessionJson;
use crate::analysis::{Detector, Verdict, format};
use crate::baseline::Comparison;
use crate::detect::{Limit, LimitSource, ProcessResult, SessionReport};
use crate::model::{Metric, Unit};
use crate::units;

/// Where a limit came from, in words.
pub fn source_words(s: LimitSource) -> &'static str {
    match s {
        LimitSource::Given => "given",
        LimitSource::Cgroup => "cgroup",
        LimitSource::RecordingMachine => "recording machine's memory",
        LimitSource::ThisMachine => "this machine's memory (the session does not say)",
        LimitSource::AddressSpace => "address-space limit (RLIMIT_AS)",
        LimitSource::OpenFiles => "open-file limit (RLIMIT_NOFILE)",
        LimitSource::Tasks => "cgroup's pids.max",
        LimitSource::ThreadsMax => "the machine's kernel.threads-max",
        LimitSource::PidMax => "the machine's kernel.pid_max",
        LimitSource::None => "none: nothing bounds it, so no time to limit is claimed",
    }
}

/// A limit in words: "24 GiB (cgroup)", or "none: ...".
pub fn limit_words(l: &Limit) -> String {
    limit_words_in(l, Unit::Bytes)
}

/// A limit of a metric of `unit` in words: "24 GiB (cgroup)", "1,024 (open-file limit
/// (RLIMIT_NOFILE))", or "none: ...".
pub fn limit_words_in(l: &Limit, unit: Unit) -> String {
    match l.bytes {
        Some(b) => format!(
            "{} ({})",
            format::amount(b as f64, unit),
            source_words(l.source)
        ),
        None => source_words(l.source).to_string(),
    }
}

/// A process's peak, and its budget when one applies: "4.1 GiB", "4.1 GiB > 2 GiB budget"
/// (a count's: "48").
pub fn peak_words(r: &ProcessResult) -> String {
    let unit = r.metric.unit();
    let peak = format::amount(r.peak as f64, unit);
    match r.budget {
        Some(b) if r.over_budget() => format!("{peak} > {} budget", format::amount(b as f64, unit)),
        Some(b) => format!("{peak} (budget {})", format::amount(b as f64, unit)),
        None => peak,
    }
}

/// The text report: a header, the counts, and a table with leaks first.
pub fn text(report: &SessionReport, colour: bool) -> String {
    let s = &report.session;
    let (leaks, ok, insufficient) = report.counts();
    let mut out = format!(
        "session {}: {}\n  {} of {}, {} detector\n  {}, {} ok, {} insufficient\n",
        s.id,
        s.what(),
        report.metrics_words(),
        units::processes(report.processes.len() as u64),
        report.params.algo.name(),
        units::count(leaks as u64, "leak", "leaks"),
        ok,
        insufficient
    );
    let over = report.over_budget().count();
    if !report.budgets.is_empty() {
        out += &format!(
            "  {} over {} peak budget\n",
            units::processes(over as u64),
            if over == 1 { "its" } else { "their" }
        );
    }
    if report.processes.is_empty() {
        return out;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "verdict", "pid", "name", "samples", "peak", "evidence",
        ]);
    if let Some(c) = t.column_mut(1) {
        c.set_cell_alignment(CellAlignment::Right);
    }
    for col in [3, 4] {
        if let Some(c) = t.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    for r in &report.processes {
        let verdict = match r.verdict() {
            Verdict::Leak => "LEAK",
            Verdict::Ok => "ok",
            Verdict::Insufficient => "insufficient",
        };
        let mut cell = Cell::new(verdict);
        if colour && r.verdict() == Verdict::Leak {
            cell = cell.fg(Color::Red);
        }
        let mut peak = Cell::new(peak_words(r));
        if colour && r.over_budget() {
            peak = peak.fg(Color::Red);
        }
        t.add_row(vec![
            cell,
            Cell::new(r.process.info.key.pid),
            Cell::new(&r.process.info.name),
            Cell::new(r.analysis.samples),
            peak,
            Cell::new(r.explanation()),
        ]);
    }
    out += &t.to_string();
    out.push('\n');
    let unit = report.metric.unit();
    let limits: Vec<String> = {
        let mut seen: Vec<Limit> = report.processes.iter().map(|p| p.limit).collect();
        seen.sort_by_key(|l| (l.bytes, l.source as u8));
        seen.dedup();
        seen.iter().map(|l| limit_words_in(l, unit)).collect()
    };
    if report.is_combined() {
        out += &format!("  {} limit: {}\n", report.metric, limits.join(", "));
    } else {
        out += &format!("  limit: {}\n", limits.join(", "));
    }
    if let Some(b) = &report.baseline {
        out += &baseline_text(b);
    }
    out
}

/// The comparison with a baseline, in lines.
pub fn baseline_text(b: &Comparison) -> String {
    if b.regressions.is_empty() {
        return format!(
            "  compared with session {}: no regression\n",
            b.baseline_session
        );
    }
    let mut out = format!(
        "  compared with session {}: {} regression{}\n",
        b.baseline_session,
        b.regressions.len(),
        if b.regressions.len() == 1 { "" } else { "s" }
    );
    for r in &b.regressions {
        out += &format!("    {}\n", r.words());
    }
    out
}

/// One process in the JSON report.
#[derive(Serialize)]
struct ProcessJson<'a> {
    pid: u32,
    start_time: u64,
    name: &'a str,
    cmdline: &'a str,
    samples: usize,
    verdict: Verdict,
    reason: std::borrow::Cow<'a, str>,
    limit_bytes: Option<u64>,
    limit_source: LimitSource,
    peak_bytes: u64,
    peak_budget_bytes: Option<u64>,
    over_budget: bool,
    detector: Option<Detector>,
    slope_bytes_per_s: Option<f64>,
    r2: Option<f64>,
    window_start_ns: Option<i64>,
    window_end_ns: Option<i64>,
    growth_bytes: Option<f64>,
    from_bytes: Option<f64>,
    to_bytes: Option<f64>,
    steps: Option<crate::analysis::Steps>,
    tests: Option<crate::analysis::TestsKept>,
    time_to_limit_s: Option<f64>,
    /// The Linear Backward Regression window, whatever decided.
    lbr: Option<crate::analysis::LbrEvidence>,
    /// For a leak, the phases it grew in most.
    grew_during: &'a [crate::detect::PhaseGrowth],
    /// For a leak recorded with growth sites, its top growth sites.
    sites: &'a [crate::sites::SiteSummary],
    /// With `--metric all`: the metrics it leaks, and each metric's own verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    leaking: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One metric's verdict on a process, under `metrics` with `--metric all`: amounts in the
/// metric's own unit.
#[derive(Serialize)]
struct MetricJson<'a> {
    unit: Unit,
    samples: usize,
    verdict: Verdict,
    reason: &'a str,
    peak: u64,
    limit: Option<u64>,
    limit_source: LimitSource,
    detector: Option<Detector>,
    slope_per_s: Option<f64>,
    r2: Option<f64>,
    window_start_ns: Option<i64>,
    window_end_ns: Option<i64>,
    growth: Option<f64>,
    from: Option<f64>,
    to: Option<f64>,
    steps: Option<crate::analysis::Steps>,
    tests: Option<crate::analysis::TestsKept>,
    time_to_limit_s: Option<f64>,
    grew_during: &'a [crate::detect::PhaseGrowth],
}

fn metric_json<'a>(
    metric: Metric,
    a: &'a crate::analysis::Analysis,
    limit: &Limit,
    peak: u64,
    grew_during: &'a [crate::detect::PhaseGrowth],
) -> MetricJson<'a> {
    let e = a.evidence;
    MetricJson {
        unit: metric.unit(),
        samples: a.samples,
        verdict: a.verdict,
        reason: &a.reason,
        peak,
        limit: limit.bytes,
        limit_source: limit.source,
        detector: e.map(|e| e.detector),
        slope_per_s: e.map(|e| e.slope_bytes_per_s),
        r2: e.map(|e| e.r2),
        window_start_ns: e.map(|e| e.window_start),
        window_end_ns: e.map(|e| e.window_end),
        growth: e.map(|e| e.growth_bytes),
        from: e.map(|e| e.from_bytes),
        to: e.map(|e| e.to_bytes),
        steps: e.and_then(|e| e.steps),
        tests: e.and_then(|e| e.tests),
        time_to_limit_s: e.and_then(|e| e.time_to_limit_s),
        grew_during,
    }
}

/// Each metric's verdict on a process, by metric name (`--metric all`).
fn metrics_json(
    r: &ProcessResult,
) -> serde_json::Result<serde_json::Map<String, serde_json::Value>> {
    let mut map = serde_json::Map::new();
    map.insert(
        r.metric.name().to_string(),
        serde_json::to_value(metric_json(
            r.metric,
            &r.analysis,
            &r.limit,
            r.peak,
            &r.grew_during,
        ))?,
    );
    for m in &r.also {
        map.insert(
            m.metric.name().to_string(),
            serde_json::to_value(metric_json(
                m.metric,
                &m.analysis,
                &m.limit,
                m.peak,
                &m.grew_during,
            ))?,
        );
    }
    Ok(map)
}

#[derive(Serialize)]
struct ReportJson<'a> {
    session: SessionJson<'a>,
    /// The metric the per-process fields judge, or `all`.
    metric: &'static str,
    /// What the report metric's amounts count: `bytes` or `count`.
    unit: Unit,
    /// Every metric judged.
    metrics: Vec<&'static str>,
    params: serde_json::Value,
    leaks: usize,
    over_budget: usize,
    budgets: &'a [crate::detect::PeakBudget],
    phases: &'a [crate::store::Phase],
    processes: Vec<ProcessJson<'a>>,
    baseline: Option<&'a Comparison>,
}

/// The parameters as the pipeline used them: `min_window` as applied, and `limit_bytes` the
/// limit every process was judged against (with `limit_source`), or null when processes had
/// different ones (each process then says its own).
fn params_used(report: &SessionReport) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(&report.params)?;
    let mut limits: Vec<Limit> = report.processes.iter().map(|p| p.limit).collect();
    limits.sort_by_key(|l| (l.bytes, l.source as u8));
    limits.dedup();
    let (bytes, source) = match limits.as_slice() {
        [one] => (one.bytes, Some(one.source)),
        _ => (None, None),
    };
    if let Some(map) = value.as_object_mut() {
        map.insert("limit_bytes".into(), serde_json::to_value(bytes)?);
        map.insert("limit_source".into(), serde_json::to_value(source)?);
        map.insert(
            "min_window".into(),
            serde_json::to_value(report.params.effective_min_window())?,
        );
    }
    Ok(value)
}

/// The JSON report: `session`, `metric`, `params`, `leaks`, `over_budget`, `budgets`, `phases`
/// and `processes`, leaks first. With `--metric all` each process's top-level fields are its
/// verdict on memory, except `verdict` and `reason` (on every metric judged), and `leaking`
/// and `metrics` hold each metric's own.
pub fn json(report: &SessionReport) -> serde_json::Result<String> {
    let combined = report.is_combined();
    let processes = report
        .processes
        .iter()
        .map(|r| {
            let e = r.analysis.evidence;
            let reason = if combined {
                std::borrow::Cow::Owned(r.explanation())
            } else {
                std::borrow::Cow::Borrowed(r.analysis.reason.as_str())
            };
            Ok(ProcessJson {
                pid: r.process.info.key.pid,
                start_time: r.process.info.key.start_time,
                name: &r.process.info.name,
                cmdline: &r.process.info.cmdline,
                samples: r.analysis.samples,
                verdict: r.verdict(),
                reason,
                limit_bytes: r.limit.bytes,
                limit_source: r.limit.source,
                peak_bytes: r.peak,
                peak_budget_bytes: r.budget,
                over_budget: r.over_budget(),
                detector: e.map(|e| e.detector),
                slope_bytes_per_s: e.map(|e| e.slope_bytes_per_s),
                r2: e.map(|e| e.r2),
                window_start_ns: e.map(|e| e.window_start),
                window_end_ns: e.map(|e| e.window_end),
                growth_bytes: e.map(|e| e.growth_bytes),
                from_bytes: e.map(|e| e.from_bytes),
                to_bytes: e.map(|e| e.to_bytes),
                steps: e.and_then(|e| e.steps),
                tests: e.and_then(|e| e.tests),
                time_to_limit_s: e.and_then(|e| e.time_to_limit_s),
                lbr: e.and_then(|e| e.lbr),
                grew_during: &r.grew_during,
                sites: &r.grew_in,
                leaking: combined.then(|| r.leaking().map(Metric::name).collect()),
                metrics: if combined {
                    Some(metrics_json(r)?)
                } else {
                    None
                },
            })
        })
        .collect::<serde_json::Result<Vec<_>>>()?;
    serde_json::to_string_pretty(&ReportJson {
        session: SessionJson::of(&report.session),
        metric: if combined {
            "all"
        } else {
            report.metric.name()
        },
        unit: report.metric.unit(),
        metrics: report.metrics.iter().map(|m| m.name()).collect(),
        params: params_used(report)?,
        leaks: report.counts().0,
        over_budget: report.over_budget().count(),
        budgets: &report.budgets,
        phases: &report.phases,
        processes,
        baseline: report.baseline.as_ref(),
    })
}

//! JUnit XML: one test case per process, a failure with the evidence for each leak, so Jenkins,
//! GitLab and GitHub test reporters show leaks where they show failing tests.

use std::io::Write;

use quick_xml::Writer;
use quick_xml::events::BytesText;

use crate::analysis::Verdict;
use crate::detect::SessionReport;
use crate::model::Metric;

/// The failure's type: what CI dashboards group by.
fn failure_type(metric: Metric) -> &'static str {
    match metric {
        Metric::Threads => "thread-leak",
        Metric::Fds => "fd-leak",
        _ => "memory-leak",
    }
}

/// What leaks, for the failure's message: the metric's name alone (`rss`, as before) when it
/// is the only one judged, else what it counts ("file descriptors").
fn leak_name(metric: Metric, report: &SessionReport) -> &'static str {
    if report.is_combined() {
        metric.what()
    } else {
        metric.name()
    }
}

/// Writes the report as a JUnit `<testsuites>` document with one `<testsuite>` per session.
pub fn write(report: &SessionReport, out: &mut dyn Write) -> std::io::Result<()> {
    let s = &report.session;
    let (leaks, _, insufficient) = report.counts();
    let regressions = report
        .baseline
        .as_ref()
        .map_or(&[][..], |b| b.regressions.as_slice());
    let baseline_id = report.baseline.as_ref().map_or(0, |b| b.baseline_session);
    let suite = format!("memtools: {}", s.what());
    let seconds = s.duration_ns().map_or(0.0, |d| d as f64 / 1e9);
    let tests = (report.processes.len() + regressions.len()).to_string();
    // A process that leaks and goes over its budget is one failing test case, with both said.
    let over_only = report
        .over_budget()
        .filter(|r| r.verdict() != Verdict::Leak)
        .count();
    let failures = (leaks + over_only + regressions.len()).to_string();
    let skipped = insufficient.to_string();
    let time = format!("{seconds:.3}");
    out.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
    let mut w = Writer::new_with_indent(out, b' ', 2);
    w.create_element("testsuites")
        .with_attributes([
            ("name", "memtools"),
            ("tests", tests.as_str()),
            ("failures", failures.as_str()),
            ("skipped", skipped.as_str()),
            ("time", time.as_str()),
        ])
        .write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attributes([
                    ("name", suite.as_str()),
                    ("tests", tests.as_str()),
                    ("failures", failures.as_str()),
                    ("errors", "0"),
                    ("skipped", skipped.as_str()),
                    ("time", time.as_str()),
                ])
                .write_inner_content(|w| {
                    for r in &report.processes {
                        let p = &r.process.info;
                        let name = format!("{} (pid {})", p.name, p.key.pid);
                        let peak = crate::report::verdicts::peak_words(r);
                        let case = w.create_element("testcase").with_attributes([
                            ("classname", "memtools.leaks"),
                            ("name", name.as_str()),
                        ]);
                        let mut failures: Vec<(String, &str, String)> = Vec::new();
                        for (metric, a, _) in r.judged() {
                            if a.verdict != Verdict::Leak {
                                continue;
                            }
                            let why = if report.is_combined() {
                                a.reason.clone()
                            } else {
                                r.explanation()
                            };
                            failures.push((
                                format!("{} leaks {}", p.name, leak_name(metric, report)),
                                failure_type(metric),
                                format!(
                                    "{why}\npeak: {peak}\ncommand: {}\nsamples: {}",
                                    p.cmdline, a.samples
                                ),
                            ));
                        }
                        if r.over_budget() {
                            failures.push((
                                format!("{} peak {peak}", p.name),
                                "memory-peak",
                                format!(
                                    "peak {peak}\n{}\ncommand: {}",
                                    r.analysis.reason, p.cmdline
                                ),
                            ));
                        }
                        case.write_inner_content(|w| {
                            w.create_element("properties").write_inner_content(|w| {
                                w.create_element("property")
                                    .with_attributes([
                                        ("name", "peak_bytes"),
                                        ("value", r.peak.to_string().as_str()),
                                    ])
                                    .write_empty()?;
                                for m in &r.also {
                                    let name = format!("peak_{}", m.metric.name());
                                    w.create_element("property")
                                        .with_attributes([
                                            ("name", name.as_str()),
                                            ("value", m.peak.to_string().as_str()),
                                        ])
                                        .write_empty()?;
                                }
                                Ok(())
                            })?;
                            for (message, kind, body) in &failures {
                                w.create_element("failure")
                                    .with_attributes([
                                        ("message", message.as_str()),
                                        ("type", *kind),
                                    ])
                                    .write_text_content(BytesText::new(body))?;
                            }
                            if failures.is_empty() && r.verdict() == Verdict::Insufficient {
                                w.create_element("skipped")
                                    .with_attribute(("message", r.analysis.reason.as_str()))
                                    .write_empty()?;
                            }
                            let out = format!("peak: {peak}\n{}", r.explanation());
                            w.create_element("system-out")
                                .write_text_content(BytesText::new(&out))?;
                            Ok(())
                        })?;
                    }
                    // A regression against the baseline is a failing test of its own.
                    for r in regressions {
                        let name = format!("{} against session {baseline_id}", r.name);
                        let message = format!("{} regressed", r.name);
                        w.create_element("testcase")
                            .with_attributes([
                                ("classname", "memtools.baseline"),
                                ("name", name.as_str()),
                            ])
                            .write_inner_content(|w| {
                                w.create_element("failure")
                                    .with_attributes([
                                        ("message", message.as_str()),
                                        ("type", "memory-regression"),
                                    ])
                                    .write_text_content(BytesText::new(&r.words()))?;
                                Ok(())
                            })?;
                    }
                    Ok(())
                })?;
            Ok(())
        })?;
    w.into_inner().write_all(b"\n")
}

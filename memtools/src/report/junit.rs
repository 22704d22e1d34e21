//! JUnit XML: one test case per process, a failure with the evidence for each leak, so Jenkins,
//! GitLab and GitHub test reporters show leaks where they show failing tests.

use std::io::Write;

use quick_xml::Writer;
use quick_xml::events::BytesText;

use crate::analysis::Verdict;
use crate::detect::SessionReport;

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
    let failures = (leaks + regressions.len()).to_string();
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
                        let case = w.create_element("testcase").with_attributes([
                            ("classname", "memtools.leaks"),
                            ("name", name.as_str()),
                        ]);
                        match r.analysis.verdict {
                            Verdict::Ok => {
                                case.write_empty()?;
                            }
                            Verdict::Leak => {
                                let message = format!("{} leaks {}", p.name, report.metric);
                                let body = format!(
                                    "{}\ncommand: {}\nsamples: {}",
                                    r.explanation(),
                                    p.cmdline,
                                    r.analysis.samples
                                );
                                case.write_inner_content(|w| {
                                    w.create_element("failure")
                                        .with_attributes([
                                            ("message", message.as_str()),
                                            ("type", "memory-leak"),
                                        ])
                                        .write_text_content(BytesText::new(&body))?;
                                    Ok(())
                                })?;
                            }
                            Verdict::Insufficient => {
                                case.write_inner_content(|w| {
                                    w.create_element("skipped")
                                        .with_attribute(("message", r.analysis.reason.as_str()))
                                        .write_empty()?;
                                    Ok(())
                                })?;
                            }
                        }
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

//! A [`Snapshot`] as an exposition: OpenMetrics, encoded by `prometheus-client`, and the
//! Prometheus text format (0.0.4) derived from it for clients that do not ask for OpenMetrics
//! (`curl ... | promtool check metrics`, older scrapers).
//!
//! Label values are escaped here: the client library writes them as given, and a process may
//! name itself with quotes, backslashes or newlines.

use std::fmt::Write as _;
use std::sync::Arc;

use memtools::model::Metric;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelSetEncoder,
    LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::catalogue::{self as cat, Export};
use crate::snapshot::{ProcessView, Selection, Snapshot};

/// The media type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One snapshot encoded both ways.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    pub openmetrics: bytes::Bytes,
    pub text: bytes::Bytes,
}

impl Exposition {
    /// Encodes a snapshot.
    pub fn of(snapshot: Arc<Snapshot>) -> Exposition {
        let openmetrics = openmetrics(snapshot);
        let text = prometheus_text(&openmetrics);
        Exposition {
            openmetrics: openmetrics.into(),
            text: text.into(),
        }
    }
}

/// The OpenMetrics text of a snapshot.
pub fn openmetrics(snapshot: Arc<Snapshot>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut out = String::new();
    // Writing to a String cannot fail, and the collector only fails when its writer does.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The Prometheus text format of an OpenMetrics exposition made by [`openmetrics`]: counters
/// are named with their `_total` in `# HELP` and `# TYPE` too, and there is no `# EOF`. (That is
/// all that differs for the families we write: no units, no info, no exemplars.)
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                let _ = writeln!(out, "# HELP {name}{suffix} {text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A label value written with the escapes both formats require.
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// `{pid, name}` and the labels that follow them (`kind`, `metric`; `backend` and `version`).
#[derive(Default)]
struct Labels<'a> {
    pid: Option<u32>,
    name: Option<&'a str>,
    extra: Option<(&'static str, &'a str)>,
    more: Option<(&'static str, &'a str)>,
}

impl Labels<'_> {
    fn is_empty(&self) -> bool {
        self.pid.is_none() && self.name.is_none() && self.extra.is_none() && self.more.is_none()
    }
}

impl EncodeLabelSet for Labels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        if let Some(pid) = self.pid {
            ("pid", pid).encode(encoder.encode_label())?;
        }
        if let Some(name) = self.name {
            ("name", Escaped(name)).encode(encoder.encode_label())?;
        }
        for (key, value) in self.extra.into_iter().chain(self.more) {
            (key, Escaped(value)).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

fn process<'a>(p: &'a ProcessView, extra: Option<(&'static str, &'a str)>) -> Labels<'a> {
    Labels {
        pid: Some(p.pid),
        name: Some(&p.name),
        extra,
        more: None,
    }
}

fn named<'a>(name: &'a str, extra: Option<(&'static str, &'a str)>) -> Labels<'a> {
    Labels {
        name: Some(name),
        extra,
        ..Labels::default()
    }
}

/// The value of one series.
enum Value {
    Gauge(f64),
    Int(i64),
    Counter(u64),
}

/// Writes one family: its descriptor, then each series.
fn family<'l>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Labels<'l>, Value)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        if labels.is_empty() {
            // A series of its own: `name value`, not `name{} value`.
            value.encode(metric)?;
            return Ok(());
        }
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Value {
    fn encode(self, m: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self {
            Value::Gauge(v) => ConstGauge::new(v).encode(m),
            Value::Int(v) => ConstGauge::new(v).encode(m),
            Value::Counter(v) => ConstCounter::new(v).encode(m),
        }
    }
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Encodes a snapshot on each scrape of its registry.
#[derive(Debug)]
struct SnapshotCollector(Arc<Snapshot>);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = &self.0;
        let sel = snap.select();
        processes(&mut encoder, &sel)?;
        verdicts(&mut encoder, &sel)?;
        groups(&mut encoder, &sel)?;
        recorder(&mut encoder, snap, &sel)
    }
}

/// The metrics of the snapshot's processes, by how each is exported.
fn metrics_present(sel: &Selection<'_>) -> Vec<Metric> {
    Metric::ALL
        .into_iter()
        .filter(|&m| sel.individual.iter().any(|p| p.latest.get(m).is_some()))
        .collect()
}

fn processes(enc: &mut DescriptorEncoder<'_>, sel: &Selection<'_>) -> Result<(), std::fmt::Error> {
    let present = metrics_present(sel);
    let memory = present.iter().filter_map(|&m| match cat::export_of(m) {
        Export::Memory(kind) => Some((m, kind)),
        _ => None,
    });
    let memory: Vec<(Metric, &str)> = memory.collect();
    family(
        enc,
        cat::PROCESS_MEMORY,
        cat::PROCESS_MEMORY_HELP,
        MetricType::Gauge,
        sel.individual.iter().flat_map(|p| {
            memory.iter().filter_map(move |&(m, kind)| {
                Some((process(p, Some(("kind", kind))), int(p.latest.get(m)?)))
            })
        }),
    )?;
    for &metric in &present {
        let kind = match cat::export_of(metric) {
            Export::Memory(_) => continue,
            Export::Counter => MetricType::Counter,
            Export::Level => MetricType::Gauge,
        };
        let series = sel.individual.iter().filter_map(|p| {
            let v = p.latest.get(metric)?;
            let value = match kind {
                MetricType::Counter => Value::Counter(v),
                _ => int(v),
            };
            Some((process(p, None), value))
        });
        family(
            enc,
            &cat::process_family(metric),
            &cat::process_help(metric),
            kind,
            series,
        )?;
    }
    Ok(())
}

fn verdicts(enc: &mut DescriptorEncoder<'_>, sel: &Selection<'_>) -> Result<(), std::fmt::Error> {
    let each = || {
        sel.individual
            .iter()
            .flat_map(|p| p.verdicts.iter().map(move |v| (*p, v)))
    };
    family(
        enc,
        cat::LEAK,
        cat::LEAK_HELP,
        MetricType::Gauge,
        each().map(|(p, v)| {
            (
                process(p, Some(("metric", v.metric.name()))),
                Value::Int(v.leak as i64),
            )
        }),
    )?;
    let rss = || each().filter(|(_, v)| v.metric == Metric::Rss);
    family(
        enc,
        cat::GROWTH,
        cat::GROWTH_HELP,
        MetricType::Gauge,
        rss().map(|(p, v)| (process(p, None), Value::Gauge(v.slope_per_s))),
    )?;
    family(
        enc,
        cat::TIME_TO_LIMIT,
        cat::TIME_TO_LIMIT_HELP,
        MetricType::Gauge,
        rss().filter_map(|(p, v)| Some((process(p, None), Value::Gauge(v.time_to_limit_s?)))),
    )
}

fn groups(enc: &mut DescriptorEncoder<'_>, sel: &Selection<'_>) -> Result<(), std::fmt::Error> {
    family(
        enc,
        cat::GROUP_PROCESSES,
        cat::GROUP_PROCESSES_HELP,
        MetricType::Gauge,
        sel.groups
            .iter()
            .map(|g| (named(&g.name, None), int(g.processes))),
    )?;
    let memory = sel.groups.iter().flat_map(|g| {
        g.sums
            .iter()
            .filter_map(move |&(m, v)| match cat::export_of(m) {
                Export::Memory(kind) => Some((named(&g.name, Some(("kind", kind))), int(v))),
                _ => None,
            })
    });
    family(
        enc,
        cat::GROUP_MEMORY,
        cat::GROUP_MEMORY_HELP,
        MetricType::Gauge,
        memory,
    )?;
    let levels: Vec<Metric> = Metric::ALL
        .into_iter()
        .filter(|&m| cat::export_of(m) == Export::Level)
        .filter(|&m| sel.groups.iter().any(|g| g.sums.iter().any(|s| s.0 == m)))
        .collect();
    for metric in levels {
        let series = sel.groups.iter().filter_map(|g| {
            let v = g.sums.iter().find(|s| s.0 == metric)?.1;
            Some((named(&g.name, None), int(v)))
        });
        family(
            enc,
            &cat::group_family(metric),
            &cat::group_help(metric),
            MetricType::Gauge,
            series,
        )?;
    }
    family(
        enc,
        cat::GROUP_LEAKS,
        cat::GROUP_LEAKS_HELP,
        MetricType::Gauge,
        sel.groups.iter().flat_map(|g| {
            g.leaks
                .iter()
                .map(move |&(m, n)| (named(&g.name, Some(("metric", m.name()))), int(n)))
        }),
    )
}

fn recorder(
    enc: &mut DescriptorEncoder<'_>,
    snap: &Snapshot,
    sel: &Selection<'_>,
) -> Result<(), std::fmt::Error> {
    let r = &snap.recorder;
    let one = |v: Value| std::iter::once((Labels::default(), v));
    let backend = if r.backend.is_empty() {
        "starting"
    } else {
        r.backend.as_str()
    };
    let info = Labels {
        extra: Some(("backend", backend)),
        more: Some(("version", env!("CARGO_PKG_VERSION"))),
        ..Labels::default()
    };
    family(
        enc,
        cat::INFO,
        cat::INFO_HELP,
        MetricType::Gauge,
        [(info, Value::Int(1))],
    )?;
    family(
        enc,
        cat::FOLLOWED,
        cat::FOLLOWED_HELP,
        MetricType::Gauge,
        one(int(r.processes_followed)),
    )?;
    family(
        enc,
        cat::EXPORTED,
        cat::EXPORTED_HELP,
        MetricType::Gauge,
        one(int(sel.individual.len() as u64)),
    )?;
    family(
        enc,
        cat::SAMPLES,
        cat::SAMPLES_HELP,
        MetricType::Counter,
        one(Value::Counter(r.samples_written)),
    )?;
    family(
        enc,
        cat::LOST,
        cat::LOST_HELP,
        MetricType::Counter,
        one(Value::Counter(r.events_lost)),
    )?;
    family(
        enc,
        cat::DRAIN,
        cat::DRAIN_HELP,
        MetricType::Gauge,
        one(Value::Gauge(r.last_drain.as_secs_f64())),
    )?;
    family(
        enc,
        cat::STORE_SIZE,
        cat::STORE_SIZE_HELP,
        MetricType::Gauge,
        one(int(r.store_bytes)),
    )?;
    family(
        enc,
        cat::PRUNED,
        cat::PRUNED_HELP,
        MetricType::Counter,
        one(Value::Counter(r.samples_pruned)),
    )?;
    if let Some(a) = snap.analysis {
        family(
            enc,
            cat::ANALYSIS,
            cat::ANALYSIS_HELP,
            MetricType::Gauge,
            one(Value::Gauge(a.duration.as_secs_f64())),
        )?;
        family(
            enc,
            cat::ANALYSED,
            cat::ANALYSED_HELP,
            MetricType::Gauge,
            one(int(a.processes as u64)),
        )?;
    }
    Ok(())
}

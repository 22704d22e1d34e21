//! Figures in the words the rest of memtools uses (`memtools::units`), fitted to table cells.

use memtools::analysis::format;
use memtools::model::Metric;
use memtools::units;

use crate::snapshot::{Judged, Row};

/// A value of `metric`: bytes in binary units, counts as they are, `-` when absent.
pub fn value(metric: Metric, v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if metric.is_bytes() => units::bytes(v),
        Some(v) => v.to_string(),
    }
}

/// A change of `metric`, signed: `+40 MiB`, `-3`, `0 B`.
pub fn growth(metric: Metric, g: Option<i64>) -> String {
    match g {
        None => "-".into(),
        Some(g) if metric.is_bytes() => units::signed_bytes(g),
        Some(0) => "0".into(),
        Some(g) => format!("{g:+}"),
    }
}

/// A rate of `metric` per second, signed: `+2 MiB/s`, `-0.5/s`.
pub fn slope(metric: Metric, s: Option<f64>) -> String {
    let Some(s) = s.filter(|s| s.is_finite()) else {
        return "-".into();
    };
    let sign = if s > 0.0 { "+" } else { "" };
    if metric.is_bytes() {
        format!("{sign}{}", format::rate(s))
    } else {
        format!("{sign}{s:.1}/s")
    }
}

/// The verdict as the table shows it: `leak`, `ok`, `insuff`, `...` while the first analysis
/// of a process with data is pending, `-` for a process with no data.
pub fn verdict(row: &Row, unicode: bool) -> &'static str {
    match row.judged.as_deref() {
        Some(Judged { verdict, .. }) => match verdict.name() {
            "insufficient" => "insuff",
            name => name,
        },
        None if row.samples > 0 => {
            if unicode {
                "…"
            } else {
                "..."
            }
        }
        None => "-",
    }
}

/// A sampling interval: `100 ms` below a second, as the analysis words durations above.
pub fn interval(ns: i64) -> String {
    const MS: i64 = 1_000_000;
    if ns > 0 && ns < 1000 * MS && ns % MS == 0 {
        format!("{} ms", ns / MS)
    } else {
        units::duration_ns(ns)
    }
}

/// A duration in seconds as the analysis words it (`42 s`, `5 min 10 s`).
pub fn seconds(s: f64) -> String {
    format::duration(s)
}

/// `title` cut to `width` characters (the last one an ellipsis when cut).
pub fn fit(title: &str, width: usize, unicode: bool) -> String {
    if title.chars().count() <= width {
        return title.to_string();
    }
    let keep: String = title.chars().take(width.saturating_sub(1)).collect();
    format!("{keep}{}", if unicode { "…" } else { "~" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_below_a_second_are_in_milliseconds() {
        assert_eq!(interval(100_000_000), "100 ms");
        assert_eq!(interval(10_000_000), "10 ms");
        assert_eq!(interval(1_000_000_000), "1 s");
        assert_eq!(interval(1_500_000_000), "1.5 s");
    }
}

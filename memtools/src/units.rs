//! Human units for memory and time, as the tables, the status line and the GUI show them.
//! Bytes and durations are the analysis's own wording ([`crate::analysis::format`]), so a
//! table and a verdict never disagree on how to write a number; this adds wall-clock times.

use crate::analysis::format;
use crate::model::{NS_PER_SEC, TimeNs};

/// Bytes in binary units (`512 B`, `1.3 MiB`, `16 GiB`), as the analysis words them.
pub fn bytes(n: u64) -> String {
    format::bytes(n as f64)
}

/// A signed change in bytes: `+412 MiB`, `-3 KiB`, `0 B`. Takes any difference of two u64.
pub fn signed_bytes(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let magnitude = format::bytes(n.unsigned_abs() as f64);
    match n {
        0 => "0 B".to_string(),
        n if n > 0 => format!("+{magnitude}"),
        _ => format!("-{magnitude}"),
    }
}

/// A duration in nanoseconds, in its two largest units (`0.3 s`, `5 min 10 s`, `3 h 20 min`);
/// under a tenth of a second in milliseconds or microseconds (`10 ms`), so a fast interval is
/// never shown as `0 s`.
pub fn duration_ns(ns: i64) -> String {
    let abs = ns.unsigned_abs();
    let sign = if ns < 0 { "-" } else { "" };
    if abs == 0 || abs >= 100_000_000 {
        return format::duration(ns as f64 / NS_PER_SEC as f64);
    }
    let (value, unit) = if abs >= 1_000_000 {
        (abs as f64 / 1e6, "ms")
    } else {
        (abs as f64 / 1e3, "µs")
    };
    let text = if value < 9.95 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    };
    format!("{sign}{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// A count with its noun, singular or plural as the count needs: `1 process`, `2 processes`,
/// `0 samples`.
pub fn count(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// [`count`] for the nouns the summaries use most.
pub fn processes(n: impl Into<u64>) -> String {
    count(n, "process", "processes")
}

/// [`count`] of samples.
pub fn samples(n: impl Into<u64>) -> String {
    count(n, "sample", "samples")
}

/// A wall-clock time as `2024-05-07 13:53:53` in UTC.
pub fn time(t: TimeNs) -> String {
    chrono::DateTime::from_timestamp(t.div_euclid(NS_PER_SEC), 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// A wall-clock time as RFC 3339 with nanoseconds, for machine-readable output.
pub fn rfc3339(t: TimeNs) -> String {
    chrono::DateTime::from_timestamp(t.div_euclid(NS_PER_SEC), t.rem_euclid(NS_PER_SEC) as u32)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2 * 1024 * 1024), "2 MiB");
        assert_eq!(signed_bytes(-3 * 1024), "-3 KiB");
        assert_eq!(signed_bytes(0), "0 B");
        assert_eq!(duration_ns(250_000_000), "0.2 s");
        assert_eq!(duration_ns(10_000_000), "10 ms");
        assert_eq!(duration_ns(2_500_000), "2.5 ms");
        assert_eq!(duration_ns(-40_000), "-40 µs");
        assert_eq!(duration_ns(0), "0 s");
        assert_eq!(duration_ns(310 * NS_PER_SEC), "5 min 10 s");
        assert_eq!(duration_ns(12_000 * NS_PER_SEC), "3 h 20 min");
        assert_eq!(time(1_714_061_305 * NS_PER_SEC), "2024-04-25 16:08:25");
        assert_eq!(processes(1u32), "1 process");
        assert_eq!(processes(2u32), "2 processes");
        assert_eq!(samples(0u32), "0 samples");
        assert_eq!(count(1u32, "leak", "leaks"), "1 leak");
        assert_eq!(
            rfc3339(1_714_061_305 * NS_PER_SEC + 210_648_000),
            "2024-04-25T16:08:25.210648Z"
        );
    }
}

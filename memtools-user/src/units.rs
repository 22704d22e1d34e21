//! Human units for memory and time, as the tables, the status line and the GUI show them.

use crate::model::{NS_PER_SEC, TimeNs};

/// Bytes in binary units: `512 B`, `4.0 KiB`, `1.3 MiB`, `16.0 GiB`.
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// A signed change in bytes: `+412.0 MiB`, `-3.0 KiB`, `0 B`.
pub fn signed_bytes(n: i64) -> String {
    match n {
        0 => "0 B".to_string(),
        n if n > 0 => format!("+{}", bytes(n as u64)),
        n => format!("-{}", bytes(n.unsigned_abs())),
    }
}

/// A duration in the two largest units that matter: `250 ms`, `5.2 s`, `5 min 10 s`,
/// `3 h 20 min`, `2 d 4 h`.
pub fn duration_ns(ns: i64) -> String {
    let ns = ns.max(0);
    if ns < NS_PER_SEC {
        return format!("{} ms", ns / 1_000_000);
    }
    let secs = ns / NS_PER_SEC;
    if secs < 60 {
        return format!("{:.1} s", ns as f64 / NS_PER_SEC as f64);
    }
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h) {
        (0, 0) => format!("{m} min {s} s"),
        (0, h) => format!("{h} h {m} min"),
        (d, h) => format!("{d} d {h} h"),
    }
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
        assert_eq!(bytes(2 * 1024 * 1024), "2.0 MiB");
        assert_eq!(signed_bytes(-3 * 1024), "-3.0 KiB");
        assert_eq!(signed_bytes(0), "0 B");
        assert_eq!(duration_ns(250_000_000), "250 ms");
        assert_eq!(duration_ns(310 * NS_PER_SEC), "5 min 10 s");
        assert_eq!(duration_ns(12_000 * NS_PER_SEC), "3 h 20 min");
        assert_eq!(time(1_714_061_305 * NS_PER_SEC), "2024-04-25 16:08:25");
        assert_eq!(
            rfc3339(1_714_061_305 * NS_PER_SEC + 210_648_000),
            "2024-04-25T16:08:25.210648Z"
        );
    }
}

//! Numbers in words a developer reads at a glance: binary byte units and short durations.
//! Pure functions, shared by the CLI's text report and the GUI.

use super::verdict::Evidence;

const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// Bytes in binary units with about three significant digits: `512 B`, `1.3 MiB`, `412 MiB`,
/// `16 GiB`. Negative values keep their sign; non-finite values print as they are.
pub fn bytes(b: f64) -> String {
    if !b.is_finite() {
        return format!("{b} B");
    }
    let sign = if b < 0.0 { "-" } else { "" };
    let mut v = b.abs();
    let mut unit = 0;
    while v >= 1023.5 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{sign}{v:.0} B");
    }
    format!("{sign}{} {}", three_digits(v), UNITS[unit])
}

/// A rate in bytes per second: `1.3 MiB/s`.
pub fn rate(bytes_per_s: f64) -> String {
    format!("{}/s", bytes(bytes_per_s))
}

fn three_digits(v: f64) -> String {
    let s = if v < 9.95 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    };
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// A duration with its two largest units: `0.5 s`, `42 s`, `5 min 10 s`, `3 h 20 min`,
/// `2 d 4 h`. Negative durations get a sign; non-finite ones print as `forever`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "forever".to_string();
    }
    if seconds < 0.0 {
        return format!("-{}", duration(-seconds));
    }
    if seconds < 10.0 {
        return format!("{} s", three_digits(seconds));
    }
    let total = seconds.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let pair = |a: u64, ua: &str, b: u64, ub: &str| {
        if b == 0 {
            format!("{a} {ua}")
        } else {
            format!("{a} {ua} {b} {ub}")
        }
    };
    if d > 0 {
        pair(d, "d", h, "h")
    } else if h > 0 {
        pair(h, "h", m, "min")
    } else if m > 0 {
        pair(m, "min", s, "s")
    } else {
        format!("{s} s")
    }
}

/// The evidence in one sentence: "grew 412 MiB at 1.3 MiB/s over the last 5 min 10 s, R^2 0.98;
/// reaches the 16 GiB limit in 3 h 20 min".
pub fn describe(e: &Evidence) -> String {
    let window = super::resample::seconds(e.window_end.saturating_sub(e.window_start));
    let verb = if e.growth_bytes >= 0.0 {
        "grew"
    } else {
        "shrank"
    };
    let when = if e.before_end_s > 0.5 {
        format!(
            "over {} ending {} before the last sample",
            duration(window),
            duration(e.before_end_s)
        )
    } else {
        format!("over the last {}", duration(window))
    };
    let limit = bytes(e.limit_bytes as f64);
    let projection = match e.time_to_limit_s {
        Some(s) if s <= 0.0 => format!("already at the {limit} limit"),
        Some(s) => format!("reaches the {limit} limit in {}", duration(s)),
        None => format!("never reaches the {limit} limit at this rate"),
    };
    format!(
        "{verb} {} at {} {when}, R^2 {:.2}; {projection}",
        bytes(e.growth_bytes.abs()),
        rate(e.slope_bytes_per_s),
        e.r2
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::verdict::Detector;

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1024.0), "1 KiB");
        assert_eq!(bytes(1.3 * 1048576.0), "1.3 MiB");
        assert_eq!(bytes(412.0 * 1048576.0), "412 MiB");
        assert_eq!(bytes(16.0 * 1073741824.0), "16 GiB");
        assert_eq!(bytes(-2.5 * 1048576.0), "-2.5 MiB");
        assert_eq!(bytes(1048575.0), "1 MiB");
        assert_eq!(rate(1.3 * 1048576.0), "1.3 MiB/s");
    }

    #[test]
    fn durations_with_two_units() {
        assert_eq!(duration(0.5), "0.5 s");
        assert_eq!(duration(42.0), "42 s");
        assert_eq!(duration(310.0), "5 min 10 s");
        assert_eq!(duration(300.0), "5 min");
        assert_eq!(duration(12_000.0), "3 h 20 min");
        assert_eq!(duration(187_200.0), "2 d 4 h");
        assert_eq!(duration(f64::INFINITY), "forever");
        assert_eq!(duration(-42.0), "-42 s");
    }

    #[test]
    fn describes_evidence_like_the_issue() {
        let mib = 1048576.0;
        let e = Evidence {
            detector: Detector::Lbr,
            slope_bytes_per_s: 1.3 * mib,
            r2: 0.98,
            window_start: 0,
            window_end: 310_000_000_000,
            growth_bytes: 412.0 * mib,
            time_to_limit_s: Some(12_000.0),
            limit_bytes: 16 << 30,
            before_end_s: 0.0,
        };
        assert_eq!(
            describe(&e),
            "grew 412 MiB at 1.3 MiB/s over the last 5 min 10 s, R^2 0.98; \
             reaches the 16 GiB limit in 3 h 20 min"
        );
        let e = Evidence {
            time_to_limit_s: None,
            before_end_s: 60.0,
            ..e
        };
        assert!(describe(&e).ends_with(
            "over 5 min 10 s ending 1 min before the last sample, R^2 0.98; \
             never reaches the 16 GiB limit at this rate"
        ));
    }
}

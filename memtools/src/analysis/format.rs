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

/// A span from one size to another, one unit for both when they share it: `3.0 -> 7.9 GiB`,
/// `500 MiB -> 1.7 GiB`.
pub fn span(from: f64, to: f64) -> String {
    let unit_of = |b: f64| {
        let mut v = b.abs();
        let mut u = 0;
        while v >= 1023.5 && u < UNITS.len() - 1 {
            v /= 1024.0;
            u += 1;
        }
        u
    };
    let (a, b) = (unit_of(from), unit_of(to));
    if a == b && a > 0 && from.is_finite() && to.is_finite() {
        let scale = 1024f64.powi(a as i32);
        let one = |v: f64| {
            let v = v / scale;
            if v.abs() < 9.95 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            }
        };
        return format!("{} -> {} {}", one(from), one(to), UNITS[a]);
    }
    format!("{} -> {}", bytes(from), bytes(to))
}

/// The evidence in one sentence, describing the whole growth: "grew 4.9 GiB over 6 min, 3.0
/// -> 7.9 GiB, in 76 steps of 64 MiB; at this rate it reaches the 24 GiB limit in 50 min", or
/// with phases "kept 3.0 MiB after each of 60 tests, 80 -> 260 MiB".
pub fn describe(e: &Evidence) -> String {
    let projection = match (e.limit_bytes, e.time_to_limit_s) {
        (Some(limit), Some(s)) if s <= 0.0 => {
            format!("; already at the {} limit", bytes(limit as f64))
        }
        (Some(limit), Some(s)) => format!(
            "; at this rate it reaches the {} limit in {}",
            bytes(limit as f64),
            duration(s)
        ),
        _ => String::new(),
    };
    if let Some(t) = e.tests {
        return format!(
            "kept {} after each of {} tests, {}{projection}",
            bytes(t.per_test_bytes),
            t.count,
            span(e.from_bytes, e.to_bytes)
        );
    }
    let over = super::resample::seconds(e.window_end.saturating_sub(e.window_start));
    let verb = if e.growth_bytes >= 0.0 {
        "grew"
    } else {
        "shrank"
    };
    let how = match e.steps {
        Some(s) if s.count > 1 => format!("in {} steps of {}", s.count, bytes(s.size_bytes)),
        _ => format!("at {}", rate(e.slope_bytes_per_s)),
    };
    format!(
        "{verb} {} over {}, {}, {how}{projection}",
        bytes(e.growth_bytes.abs()),
        duration(over),
        span(e.from_bytes, e.to_bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::life::Steps;
    use crate::analysis::verdict::{Detector, TestsKept};

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
    fn spans_share_a_unit_when_they_can() {
        let g = 1073741824.0;
        assert_eq!(span(3.0 * g, 7.9 * g), "3.0 -> 7.9 GiB");
        assert_eq!(span(80.0 * 1048576.0, 260.0 * 1048576.0), "80 -> 260 MiB");
        assert_eq!(span(500.0 * 1048576.0, 1.7 * g), "500 MiB -> 1.7 GiB");
    }

    #[test]
    fn describes_evidence_like_the_issue() {
        let mib = 1048576.0;
        let g = 1024.0 * mib;
        let e = Evidence {
            detector: Detector::Envelope,
            slope_bytes_per_s: 4.9 * g / 360.0,
            r2: 0.99,
            window_start: 0,
            window_end: 360_000_000_000,
            growth_bytes: 4.9 * g,
            from_bytes: 3.0 * g,
            to_bytes: 7.9 * g,
            steps: Some(Steps {
                count: 76,
                size_bytes: 64.0 * mib,
            }),
            tests: None,
            time_to_limit_s: Some(3000.0),
            limit_bytes: Some(24 << 30),
            lbr: None,
        };
        assert_eq!(
            describe(&e),
            "grew 4.9 GiB over 6 min, 3.0 -> 7.9 GiB, in 76 steps of 64 MiB; \
             at this rate it reaches the 24 GiB limit in 50 min"
        );
        // No limit that means something (virtual size without an address-space limit): no claim.
        let e = Evidence {
            steps: None,
            limit_bytes: None,
            ..e
        };
        assert_eq!(
            describe(&e),
            "grew 4.9 GiB over 6 min, 3.0 -> 7.9 GiB, at 14 MiB/s"
        );
        let e = Evidence {
            tests: Some(TestsKept {
                count: 60,
                per_test_bytes: 3.0 * mib,
            }),
            from_bytes: 80.0 * mib,
            to_bytes: 260.0 * mib,
            ..e
        };
        assert_eq!(
            describe(&e),
            "kept 3 MiB after each of 60 tests, 80 -> 260 MiB"
        );
    }
}

//! Numbers in words a developer reads at a glance: binary byte units and short durations.
//! Pure functions, shared by the CLI's text report and the GUI.

use super::verdict::Evidence;
use crate::model::Unit;

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

/// A count as people write it: `4,810`, `12`; a fraction of one (an average) with one
/// decimal: `0.5`, `2.5`.
pub fn count(n: f64) -> String {
    if !n.is_finite() {
        return format!("{n}");
    }
    let sign = if n < 0.0 { "-" } else { "" };
    let v = n.abs();
    if v < 9.95 && (v - v.round()).abs() >= 0.05 {
        return format!("{sign}{v:.1}");
    }
    let digits = format!("{:.0}", v.round());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// An amount in its unit: bytes in binary units, counts as numbers.
pub fn amount(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => bytes(v),
        Unit::Count => count(v),
    }
}

/// A rate in its unit: `1.3 MiB/s`; a count per second, minute or hour, whichever reads as a
/// number of at least one, signed: `+9/s`, `+6/min`, `+2/h`.
pub fn rate_in(per_s: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => rate(per_s),
        Unit::Count => {
            let sign = if per_s < 0.0 { "-" } else { "+" };
            let v = per_s.abs();
            let (value, per) = if v >= 0.95 || v == 0.0 || !v.is_finite() {
                (v, "s")
            } else if v * 60.0 >= 0.95 {
                (v * 60.0, "min")
            } else {
                (v * 3600.0, "h")
            };
            let text = if value < 9.95 {
                format!("{value:.1}")
            } else {
                count(value)
            };
            format!("{sign}{}/{per}", text.strip_suffix(".0").unwrap_or(&text))
        }
    }
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

/// [`span`] in a unit: counts as `12 -> 4,810`.
pub fn span_in(from: f64, to: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => span(from, to),
        Unit::Count => format!("{} -> {}", count(from), count(to)),
    }
}

/// The evidence in one sentence, describing the whole growth: "grew 4.9 GiB over 6 min, 3.0
/// -> 7.9 GiB, in 76 steps of 64 MiB; at this rate it reaches the 24 GiB limit in 50 min", or
/// with phases "kept 3.0 MiB after each of 60 tests, 80 -> 260 MiB".
pub fn describe(e: &Evidence) -> String {
    let unit = e.unit;
    let projection = match (e.limit_bytes, e.time_to_limit_s, unit) {
        (Some(limit), Some(s), Unit::Bytes) if s <= 0.0 => {
            format!("; already at the {} limit", bytes(limit as f64))
        }
        (Some(limit), Some(s), Unit::Bytes) => format!(
            "; at this rate it reaches the {} limit in {}",
            bytes(limit as f64),
            duration(s)
        ),
        (Some(limit), Some(s), Unit::Count) if s <= 0.0 => {
            format!("; already at its limit of {}", count(limit as f64))
        }
        (Some(limit), Some(s), Unit::Count) => format!(
            "; at this rate it reaches its limit of {} in {}",
            count(limit as f64),
            duration(s)
        ),
        _ => String::new(),
    };
    if let Some(t) = e.tests {
        return format!(
            "kept {} after each of {} tests, {}{projection}",
            amount(t.per_test_bytes, unit),
            t.count,
            span_in(e.from_bytes, e.to_bytes, unit)
        );
    }
    let over = super::resample::seconds(e.window_end.saturating_sub(e.window_start));
    if unit == Unit::Count {
        // "12 -> 4,810 over 9 min, +9/s": a count's growth reads best as where it went.
        let how = match e.steps {
            Some(s) if s.count > 1 && s.size_bytes >= 1.5 => {
                format!("in {} steps of {}", s.count, count(s.size_bytes))
            }
            _ => rate_in(e.slope_bytes_per_s, unit),
        };
        return format!(
            "{} over {}, {how}{projection}",
            span_in(e.from_bytes, e.to_bytes, unit),
            duration(over)
        );
    }
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
            unit: Unit::Bytes,
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

    #[test]
    fn counts_read_as_numbers_and_their_growth_as_where_it_went() {
        assert_eq!(count(4810.0), "4,810");
        assert_eq!(count(12.0), "12");
        assert_eq!(count(1_234_567.0), "1,234,567");
        assert_eq!(count(0.5), "0.5");
        assert_eq!(count(-3.0), "-3");
        assert_eq!(amount(2.0 * 1048576.0, Unit::Bytes), "2 MiB");
        assert_eq!(amount(5.0, Unit::Count), "5");
        assert_eq!(rate_in(9.0, Unit::Count), "+9/s");
        assert_eq!(rate_in(0.1, Unit::Count), "+6/min");
        assert_eq!(rate_in(1.0 / 1800.0, Unit::Count), "+2/h");
        assert_eq!(rate_in(-2.5, Unit::Count), "-2.5/s");
        assert_eq!(span_in(12.0, 4810.0, Unit::Count), "12 -> 4,810");
        let e = Evidence {
            detector: Detector::Envelope,
            slope_bytes_per_s: 4798.0 / 540.0,
            r2: 0.99,
            window_start: 0,
            window_end: 540_000_000_000,
            growth_bytes: 4798.0,
            from_bytes: 12.0,
            to_bytes: 4810.0,
            steps: None,
            tests: None,
            time_to_limit_s: None,
            limit_bytes: None,
            lbr: None,
            unit: Unit::Count,
        };
        assert_eq!(describe(&e), "12 -> 4,810 over 9 min, +8.9/s");
        let e = Evidence {
            slope_bytes_per_s: 9.0,
            limit_bytes: Some(8192),
            time_to_limit_s: Some(375.0),
            ..e
        };
        assert_eq!(
            describe(&e),
            "12 -> 4,810 over 9 min, +9/s; at this rate it reaches its limit of 8,192 in 6 min 15 s"
        );
        // Steps of one are a rate; steps of a batch are said.
        let e = Evidence {
            steps: Some(Steps {
                count: 30,
                size_bytes: 1.0,
            }),
            time_to_limit_s: None,
            ..e
        };
        assert!(describe(&e).ends_with("+9/s"), "{}", describe(&e));
        let e = Evidence {
            steps: Some(Steps {
                count: 12,
                size_bytes: 8.0,
            }),
            ..e
        };
        assert!(
            describe(&e).ends_with("in 12 steps of 8"),
            "{}",
            describe(&e)
        );
        let e = Evidence {
            tests: Some(TestsKept {
                count: 59,
                per_test_bytes: 1.0,
            }),
            from_bytes: 4.0,
            to_bytes: 63.0,
            ..e
        };
        assert_eq!(describe(&e), "kept 1 after each of 59 tests, 4 -> 63");
    }
}

//! How the view looks on the terminal it runs in: colour unless `NO_COLOR` says otherwise
//! (then bold, dim and reverse carry the meaning alone), and Unicode blocks and braille only
//! when the locale is UTF-8 (otherwise ASCII that any terminal shows).

use memtools::analysis::Verdict;
use ratatui::style::{Color, Modifier, Style};

/// Colour and character set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
    pub unicode: bool,
}

impl Theme {
    /// From the environment: `NO_COLOR` (set and not empty: no colour, <https://no-color.org>)
    /// and the locale (`LC_ALL`, `LC_CTYPE`, `LANG`, the first set: UTF-8 or not).
    pub fn from_env() -> Theme {
        Theme::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Theme::from_env`] over any source of variables.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Theme {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let locale = var("LC_ALL")
            .or_else(|| var("LC_CTYPE"))
            .or_else(|| var("LANG"));
        Theme {
            color: var("NO_COLOR").is_none(),
            unicode: locale.is_some_and(|l| {
                let l = l.to_lowercase();
                l.contains("utf-8") || l.contains("utf8")
            }),
        }
    }

    fn fg(&self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    pub fn title(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn heading(&self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// The heading of the column the table is sorted by.
    pub fn sorted_heading(&self) -> Style {
        self.heading().add_modifier(Modifier::UNDERLINED)
    }

    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn exited(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn dim(&self) -> Style {
        self.fg(Color::DarkGray).add_modifier(if self.color {
            Modifier::empty()
        } else {
            Modifier::DIM
        })
    }

    pub fn verdict(&self, verdict: Option<Verdict>) -> Style {
        match verdict {
            Some(Verdict::Leak) => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Some(Verdict::Ok) => self.fg(Color::Green),
            Some(Verdict::Insufficient) | None => self.dim(),
        }
    }

    pub fn growth(&self, growth: Option<i64>) -> Style {
        match growth {
            Some(g) if g > 0 => self.fg(Color::LightRed),
            _ => Style::new(),
        }
    }

    pub fn spark(&self) -> Style {
        self.fg(Color::Magenta)
    }

    pub fn history(&self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn fit(&self) -> Style {
        self.fg(Color::Red)
    }

    pub fn problem(&self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn key(&self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Sparkline levels, lowest first.
    pub fn levels(&self) -> &'static [char] {
        if self.unicode {
            &['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█']
        } else {
            &['_', '.', '-', '~', ':', '=', '*', '#']
        }
    }

    /// The separator between header items.
    pub fn dot(&self) -> &'static str {
        if self.unicode { " · " } else { " | " }
    }
}

/// The history in `width` cells at most, newest at the right: each cell the largest value of its
/// share of the buckets, scaled from `low` (the history's smallest value) to the highest.
pub fn sparkline(buckets: &[u64], low: u64, width: usize, theme: &Theme) -> String {
    if buckets.is_empty() || width == 0 {
        return String::new();
    }
    let cells: Vec<u64> = if buckets.len() <= width {
        buckets.to_vec()
    } else {
        (0..width)
            .map(|i| {
                let (a, b) = (i * buckets.len() / width, (i + 1) * buckets.len() / width);
                buckets[a..b.max(a + 1)].iter().copied().max().unwrap_or(0)
            })
            .collect()
    };
    let (lo, hi) = cells
        .iter()
        .fold((low, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let levels = theme.levels();
    let top = levels.len() - 1;
    let mut out = String::with_capacity(width * 3);
    for _ in cells.len()..width {
        out.push(' ');
    }
    for v in cells {
        let level = if hi > lo {
            ((v - lo) as f64 / (hi - lo) as f64 * top as f64).round() as usize
        } else {
            0
        };
        out.push(levels[level.min(top)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNICODE: Theme = Theme {
        color: true,
        unicode: true,
    };

    #[test]
    fn a_sparkline_rises_with_its_history_and_fits_its_width() {
        assert_eq!(
            sparkline(&[0, 1, 2, 3, 4, 5, 6, 7], 0, 8, &UNICODE),
            "▁▂▃▄▅▆▇█"
        );
        // Fewer buckets than cells: right-aligned, newest at the right edge.
        assert_eq!(sparkline(&[5, 5], 5, 4, &UNICODE), "  ▁▁");
        // A sawtooth's peaks stand high above its floor, not spread by their small differences.
        assert_eq!(sparkline(&[24, 26, 25], 1, 3, &UNICODE), "▇██");
        // More buckets than cells: each cell the largest of its share.
        let s = sparkline(&(0..64).collect::<Vec<_>>(), 0, 8, &UNICODE);
        assert_eq!(s.chars().count(), 8);
        assert!(s.ends_with('█'), "{s}");
        let ascii = Theme {
            color: false,
            unicode: false,
        };
        assert_eq!(sparkline(&[0, 7], 0, 2, &ascii), "_#");
    }

    #[test]
    fn no_color_and_the_locale_decide_the_look() {
        let with = |vars: &'static [(&'static str, &'static str)]| {
            Theme::from_vars(|name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            })
        };
        assert_eq!(
            with(&[]),
            Theme {
                color: true,
                unicode: false
            }
        );
        assert!(!with(&[("NO_COLOR", "1")]).color);
        // Set but empty is not set (no-color.org).
        assert!(with(&[("NO_COLOR", "")]).color);
        assert!(with(&[("LANG", "C.UTF-8")]).unicode);
        assert!(with(&[("LANG", "en_US.utf8")]).unicode);
        // LC_ALL wins over LANG.
        assert!(!with(&[("LC_ALL", "C"), ("LANG", "C.UTF-8")]).unicode);
    }
}

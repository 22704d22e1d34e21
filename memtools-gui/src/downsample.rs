//! Per-pixel downsampling that keeps every peak: a plot line never needs more than about two
//! points per pixel column (the bucket's minimum and maximum, in time order), and a min/max
//! pyramid built once per history makes finding them O(pixels), not O(samples), so a
//! 10-million-sample history pans and zooms at display rate.

use egui_plot::PlotPoint;

/// Raw points (or chunks) per chunk of the next pyramid level.
const FANOUT: usize = 8;
/// Below this many points per pixel a view draws the raw points (with min/max per bucket).
const CHUNKS_PER_PIXEL: usize = 2;

/// One level of the pyramid: chunk `i` covers raw points `i * size .. (i + 1) * size`.
#[derive(Clone, Debug, Default)]
struct Level {
    size: usize,
    /// Time of the chunk's first point: where it falls in the view.
    x: Vec<f64>,
    min: Vec<(f64, f64)>,
    max: Vec<(f64, f64)>,
}

/// A history ready to plot: x in seconds (sorted), y in bytes, and its min/max pyramid.
#[derive(Clone, Debug, Default)]
pub struct Series {
    x: Vec<f64>,
    y: Vec<f64>,
    levels: Vec<Level>,
}

impl Series {
    /// Builds the pyramid; `x` must be sorted (the store returns histories in time order).
    pub fn new(x: Vec<f64>, y: Vec<f64>) -> Series {
        let n = x.len().min(y.len());
        let mut levels: Vec<Level> = Vec::new();
        let mut size = FANOUT;
        // Levels down to two chunks: a coarser one could never serve a view.
        while size < n {
            let level = match levels.last() {
                None => chunk_raw(&x[..n], &y[..n], size),
                Some(prev) => chunk_level(prev, size),
            };
            levels.push(level);
            size *= FANOUT;
        }
        Series { x, y, levels }
    }

    pub fn len(&self) -> usize {
        self.x.len().min(self.y.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Time range and value range, for the plot's default bounds.
    pub fn x_range(&self) -> Option<(f64, f64)> {
        Some((*self.x.first()?, *self.x.last()?))
    }

    /// Writes into `out` the points to draw for the view `x0..=x1` at `pixels` columns: the
    /// raw points when there are few, else per pixel column the minimum and maximum in time
    /// order. One point either side of the view is kept so the line runs to the edges.
    pub fn downsample(&self, x0: f64, x1: f64, pixels: usize, out: &mut Vec<PlotPoint>) {
        out.clear();
        let n = self.len();
        if n == 0 || x1.partial_cmp(&x0) != Some(std::cmp::Ordering::Greater) {
            return;
        }
        let pixels = pixels.max(1);
        let lo = self.x[..n].partition_point(|&x| x < x0).saturating_sub(1);
        let hi = (self.x[..n].partition_point(|&x| x <= x1) + 1).min(n);
        let count = hi - lo;
        if count <= CHUNKS_PER_PIXEL * 2 * pixels {
            out.extend((lo..hi).map(|i| PlotPoint::new(self.x[i], self.y[i])));
            return;
        }
        // The coarsest level that still has at least two chunks per pixel.
        let level = self
            .levels
            .iter()
            .rev()
            .find(|l| count / l.size >= CHUNKS_PER_PIXEL * pixels);
        let width = (x1 - x0) / pixels as f64;
        let bucket = |x: f64| (((x - x0) / width).floor().max(-1.0) as i64).min(pixels as i64);
        let mut acc = Bucket::default();
        let mut push = |b: i64, min: (f64, f64), max: (f64, f64), out: &mut Vec<PlotPoint>| {
            if acc.id != Some(b) {
                acc.flush(out);
                acc = Bucket {
                    id: Some(b),
                    min,
                    max,
                };
            } else {
                if min.1 < acc.min.1 {
                    acc.min = min;
                }
                if max.1 > acc.max.1 {
                    acc.max = max;
                }
            }
        };
        match level {
            Some(l) => {
                let (c0, c1) = (lo / l.size, hi.div_ceil(l.size).min(l.x.len()));
                for c in c0..c1 {
                    push(bucket(l.x[c]), l.min[c], l.max[c], out);
                }
            }
            None => {
                for i in lo..hi {
                    let p = (self.x[i], self.y[i]);
                    push(bucket(p.0), p, p, out);
                }
            }
        }
        acc.flush(out);
    }
}

/// The extremes of one pixel column so far.
#[derive(Default)]
struct Bucket {
    id: Option<i64>,
    min: (f64, f64),
    max: (f64, f64),
}

impl Bucket {
    fn flush(&self, out: &mut Vec<PlotPoint>) {
        if self.id.is_none() {
            return;
        }
        let (a, b) = if self.min.0 <= self.max.0 {
            (self.min, self.max)
        } else {
            (self.max, self.min)
        };
        out.push(PlotPoint::new(a.0, a.1));
        if b != a {
            out.push(PlotPoint::new(b.0, b.1));
        }
    }
}

fn chunk_raw(x: &[f64], y: &[f64], size: usize) -> Level {
    let chunks = x.len().div_ceil(size);
    let mut level = Level {
        size,
        x: Vec::with_capacity(chunks),
        min: Vec::with_capacity(chunks),
        max: Vec::with_capacity(chunks),
    };
    for (xs, ys) in x.chunks(size).zip(y.chunks(size)) {
        let mut min = (xs[0], ys[0]);
        let mut max = min;
        for (&xi, &yi) in xs.iter().zip(ys) {
            if yi < min.1 {
                min = (xi, yi);
            }
            if yi > max.1 {
                max = (xi, yi);
            }
        }
        level.x.push(xs[0]);
        level.min.push(min);
        level.max.push(max);
    }
    level
}

fn chunk_level(prev: &Level, size: usize) -> Level {
    let step = size / prev.size;
    let chunks = prev.x.len().div_ceil(step);
    let mut level = Level {
        size,
        x: Vec::with_capacity(chunks),
        min: Vec::with_capacity(chunks),
        max: Vec::with_capacity(chunks),
    };
    for start in (0..prev.x.len()).step_by(step) {
        let end = (start + step).min(prev.x.len());
        let min = prev.min[start..end]
            .iter()
            .copied()
            .reduce(|a, b| if b.1 < a.1 { b } else { a });
        let max = prev.max[start..end]
            .iter()
            .copied()
            .reduce(|a, b| if b.1 > a.1 { b } else { a });
        if let (Some(min), Some(max)) = (min, max) {
            level.x.push(prev.x[start]);
            level.min.push(min);
            level.max.push(max);
        }
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize) -> Series {
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        // A sawtooth with one tall spike and one deep dip that must survive.
        let mut y: Vec<f64> = (0..n).map(|i| (i % 100) as f64).collect();
        y[n / 3] = 1e6;
        y[2 * n / 3] = -1e6;
        Series::new(x, y)
    }

    #[test]
    fn few_points_are_drawn_as_they_are() {
        let s = series(50);
        let mut out = Vec::new();
        s.downsample(0.0, 49.0, 800, &mut out);
        assert_eq!(out.len(), 50);
    }

    #[test]
    fn many_points_become_two_per_pixel_and_keep_extremes() {
        for n in [10_000, 1_000_000] {
            let s = series(n);
            let mut out = Vec::new();
            s.downsample(0.0, (n - 1) as f64, 500, &mut out);
            assert!(out.len() <= 2 * 502, "{n}: {} points", out.len());
            let max = out.iter().map(|p| p.y).fold(f64::MIN, f64::max);
            let min = out.iter().map(|p| p.y).fold(f64::MAX, f64::min);
            assert_eq!((min, max), (-1e6, 1e6), "{n}");
            assert!(out.windows(2).all(|w| w[0].x <= w[1].x), "{n}: time order");
        }
    }

    #[test]
    fn a_zoomed_view_covers_its_edges() {
        let s = series(1_000_000);
        let mut out = Vec::new();
        s.downsample(1000.5, 2000.5, 100, &mut out);
        let first = out.first().map(|p| p.x).unwrap_or(f64::NAN);
        let last = out.last().map(|p| p.x).unwrap_or(f64::NAN);
        assert!(first <= 1000.5 && last >= 2000.5, "{first}..{last}");
    }

    #[test]
    fn empty_and_inverted_views_draw_nothing() {
        let mut out = vec![PlotPoint::new(0.0, 0.0)];
        Series::new(vec![], vec![]).downsample(0.0, 1.0, 10, &mut out);
        assert!(out.is_empty());
        series(100).downsample(5.0, 1.0, 10, &mut out);
        assert!(out.is_empty());
    }
}

//! A developer hook for measuring the real window's frame time, rendering included (the
//! criterion bench measures the CPU side only): with `MEMTOOLS_GUI_FRAME_STATS=1` the app
//! repaints continuously, pans the plot back and forth by 1% of its width per frame, and prints
//! the frame times every 300 frames to stderr (`=all`: with every process plotted).
//! scripts/frame-time.sh runs it under Xvfb.

/// Frames per printed line.
const REPORT_EVERY: usize = 300;
/// Frames per pan direction.
const SWING: u64 = 60;

#[derive(Debug, Default)]
pub struct FrameStats {
    enabled: bool,
    /// `MEMTOOLS_GUI_FRAME_STATS=all`: plot every process, not just the first row.
    pub all: bool,
    frame: u64,
    dts: Vec<f32>,
}

impl FrameStats {
    pub fn from_env() -> FrameStats {
        let v = std::env::var_os("MEMTOOLS_GUI_FRAME_STATS");
        FrameStats {
            enabled: v.as_ref().is_some_and(|v| v == "1" || v == "all"),
            all: v.is_some_and(|v| v == "all"),
            ..FrameStats::default()
        }
    }

    /// The pan of this frame, as a fraction of the view's width (`None` when not measuring).
    pub fn pan(&self) -> Option<f64> {
        self.enabled.then(|| {
            if (self.frame / SWING).is_multiple_of(2) {
                0.01
            } else {
                -0.01
            }
        })
    }

    /// Counts a frame: the time since the previous one is the whole frame, painting and
    /// buffer swap included, since nothing else waits (Xvfb has no vsync).
    /// Frames while `ready` is false (still reading or analysing) are not counted.
    pub fn record(&mut self, ctx: &egui::Context, ready: bool) {
        if !self.enabled {
            return;
        }
        ctx.request_repaint();
        if !ready {
            return;
        }
        self.frame += 1;
        let dt = ctx.input(|i| i.unstable_dt);
        if self.frame > 10 {
            self.dts.push(dt * 1000.0);
        }
        if self.dts.len() >= REPORT_EVERY {
            let mut d = std::mem::take(&mut self.dts);
            d.sort_by(f32::total_cmp);
            let mean = d.iter().sum::<f32>() / d.len() as f32;
            let p = |q: f32| d[((d.len() - 1) as f32 * q) as usize];
            eprintln!(
                "frame time over {} frames: mean {mean:.1} ms, median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
                d.len(),
                p(0.5),
                p(0.95),
                p(1.0)
            );
        }
    }
}

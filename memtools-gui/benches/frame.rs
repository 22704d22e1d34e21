//! Frame time of the app over a 10-million-sample session while the plot is panned: layout,
//! plot downsampling and tessellation (the CPU side of a frame; the README gives the figure).
//!
//! The session is a real store: 10 processes x 1,000,000 samples at 10 ms, one leaking. It is
//! written once per run (about half a minute) into a temporary directory and read by the app as
//! a person's would be, so the setup also reports how long opening it takes.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../examples/big_store.rs"]
mod big_store;
use egui::{Event, Pos2, RawInput, Rect, pos2, vec2};
use memtools_gui::{App, Saved};

fn input(events: Vec<Event>) -> RawInput {
    RawInput {
        screen_rect: Some(Rect::from_min_size(Pos2::ZERO, vec2(1600.0, 1000.0))),
        events,
        ..Default::default()
    }
}

fn frame(ctx: &egui::Context, app: &mut App, events: Vec<Event>) {
    let out = ctx.run_ui(input(events), |ui| app.show(ui));
    let prims = ctx.tessellate(out.shapes, out.pixels_per_point);
    std::hint::black_box(prims);
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.db");
    let t = Instant::now();
    big_store::write_store(&path);
    eprintln!("wrote 10M samples in {:.1?}", t.elapsed());
    let ctx = egui::Context::default();
    let mut app = App::new(path, Saved::default());
    let t = Instant::now();
    while app.busy() || app.results.is_none() {
        frame(&ctx, &mut app, vec![]);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "loading took too long"
        );
    }
    let samples = app.loaded.as_ref().map_or(0, |l| l.samples());
    eprintln!(
        "opened and analysed {samples} samples in {:.1?}",
        t.elapsed()
    );
    assert_eq!(
        samples,
        (big_store::PROCESSES as usize) * big_store::SAMPLES as usize
    );
    for _ in 0..5 {
        frame(&ctx, &mut app, vec![]);
    }
    // Drag the plot back and forth: every frame has a new view to downsample.
    let centre = pos2(800.0, 750.0);
    frame(&ctx, &mut app, vec![Event::PointerMoved(centre)]);
    frame(
        &ctx,
        &mut app,
        vec![Event::PointerButton {
            pos: centre,
            button: egui::PointerButton::Primary,
            pressed: true,
            modifiers: Default::default(),
        }],
    );
    let mut x = centre.x;
    let mut dir = 7.0;
    let mut pan = |app: &mut App| {
        x += dir;
        if !(500.0..1100.0).contains(&x) {
            dir = -dir;
        }
        frame(&ctx, app, vec![Event::PointerMoved(pos2(x, centre.y))]);
    };
    // The drag really pans: the view moves, so each frame samples a new range.
    let before = app.plot_view();
    for _ in 0..10 {
        pan(&mut app);
    }
    assert_ne!(before, app.plot_view(), "the drag did not pan the plot");
    assert!(app.drawn.points > 0);
    let mut group = c.benchmark_group("frame_10M_samples");
    group.sample_size(50);
    group.bench_function("pan_one_process", |b| b.iter(|| pan(&mut app)));
    let all: Vec<i64> = app.rows.iter().map(|r| r.process_id).collect();
    app.selected.extend(all);
    group.bench_function("pan_all_ten_processes", |b| b.iter(|| pan(&mut app)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

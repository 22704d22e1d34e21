//! The "where it grows" panel (issue 15) driven headless through egui_kittest over a store made
//! here with the store's own API (`add_sites`, no root, no eBPF): the table names the top site
//! and its share, the flame graph gives the leaking function a width in proportion to its bytes,
//! and the range (the leak window, the whole recording, a shift-drag on the plot) decides what
//! is counted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::{Event, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use memtools::analysis::{GIB, MIB, Verdict};
use memtools::model::{
    BackendKind, Metrics, NS_PER_SEC, NewSession, ProcessInfo, ProcessKey, ProcessLimits, Sample,
    TimeNs,
};
use memtools::sites::{Frame, SiteCause, SiteCount};
use memtools::store::{SessionWriter, Store};
use memtools_gui::sites::SiteRange;
use memtools_gui::{App, Saved};

const T0: TimeNs = 1_767_225_600 * NS_PER_SEC;

fn session(start: TimeNs, command: &str) -> NewSession {
    NewSession {
        host: "test".into(),
        kernel: "6.18".into(),
        backend: BackendKind::Ebpf,
        backend_reason: "test".into(),
        interval_ns: Some(NS_PER_SEC),
        command: Some(command.into()),
        source: None,
        start,
        monotonic_offset_ns: None,
        mem_total: Some(2 * GIB),
        threads_max: None,
        pid_max: None,
    }
}

/// A process sampled every second for ten minutes, its resident memory `f(seconds)`.
fn process(
    w: &mut SessionWriter<'_>,
    start: TimeNs,
    pid: u32,
    name: &str,
    f: impl Fn(f64) -> f64,
) -> i64 {
    let info = ProcessInfo {
        key: ProcessKey {
            pid,
            start_time: u64::from(pid),
        },
        ppid: None,
        name: name.into(),
        cmdline: name.into(),
    };
    let id = w
        .add_process(&info, ProcessLimits::default())
        .expect("process");
    for i in 0..600i64 {
        let metrics = Metrics {
            rss_anon: Some(f(i as f64) as u64),
            rss_file: Some(0),
            rss_shmem: Some(0),
            ..Metrics::default()
        };
        let sample = Sample {
            time: start + i * NS_PER_SEC,
            metrics,
        };
        w.add_sample(id, &sample).expect("sample");
    }
    id
}

fn frame(function: &str, file: Option<&str>, line: u32, module: &str) -> Frame {
    Frame {
        address: 0x40_1000 + u64::from(line),
        module: Some(module.into()),
        function: Some(function.into()),
        file: file.map(String::from),
        line: file.map(|_| line),
        ..Frame::default()
    }
}

fn counts(start: TimeNs, at_seconds: &[i64], samples: u64, bytes: u64) -> Vec<SiteCount> {
    at_seconds
        .iter()
        .map(|s| SiteCount {
            time: start + s * NS_PER_SEC,
            cause: SiteCause::Fault,
            samples,
            bytes,
        })
        .collect()
}

/// Two sessions. The older recorded no sites. The newer (opened first): `grow_cache` leaks
/// 1 MiB a second; its faults are sampled in `grow_cache` (under memset) every 10 s, 1 MiB and
/// 4 samples a bucket (60 MiB in all), and once, at 5 s, 20 MiB in `early_init` (so 75 % and
/// 25 % over the whole recording, 100 % from 100 s on); `flat` was built without frame
/// pointers: its stacks are one frame deep.
fn store(dir: &Path) -> PathBuf {
    let path = dir.join("sites.db");
    let store = Store::open(&path).expect("create store");
    let mut w = store.begin_session(&session(T0, "old")).expect("session");
    process(&mut w, T0, 5, "no_sites", |_| 30.0 * MIB as f64);
    w.finish(T0 + 600 * NS_PER_SEC, None).expect("finish");

    let t1 = T0 + 86_400 * NS_PER_SEC;
    let mut w = store
        .begin_session(&session(t1, "./cache"))
        .expect("session");
    let leak = process(&mut w, t1, 7, "grow_cache", |s| (20.0 + s) * MIB as f64);
    let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6";
    let exe = "/src/cache";
    let grow = vec![
        frame("__memset_avx2_unaligned_erms", None, 1, libc),
        frame("grow_cache", Some("/src/cache.c"), 41, exe),
        frame("main", Some("/src/main.c"), 9, exe),
    ];
    let buckets: Vec<i64> = (0..60).map(|i| i * 10).collect();
    w.add_sites(leak, &grow, &counts(t1, &buckets, 4, MIB))
        .expect("sites");
    let init = vec![
        frame("early_init", Some("/src/init.c"), 12, exe),
        frame("main", Some("/src/main.c"), 7, exe),
    ];
    w.add_sites(leak, &init, &counts(t1, &[5], 2, 20 * MIB))
        .expect("sites");
    let flat = process(&mut w, t1, 8, "flat", |s| (30.0 + 0.2 * s) * MIB as f64);
    let memset = vec![frame("memset", None, 2, libc)];
    w.add_sites(flat, &memset, &counts(t1, &buckets, 3, MIB))
        .expect("sites");
    w.finish(t1 + 600 * NS_PER_SEC, None).expect("finish");
    path
}

fn settle(h: &mut Harness<'_, App>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        h.step();
        if !h.state().busy() {
            break;
        }
        assert!(Instant::now() < deadline, "the app stayed busy");
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(4);
}

fn label_shown(h: &Harness<'_, App>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

/// The width of the flame graph's rectangle for `name`, as a share of the whole graph's.
fn flame_share(app: &App, name: &str) -> f32 {
    let d = &app.sites.drawn;
    d.named(name).map(|r| r.rect.width()).sum::<f32>() / d.width
}

/// A shift-drag across the plot from `a` to `b` seconds, as a person makes it.
fn shift_drag(h: &mut Harness<'_, App>, a: f64, b: f64) {
    let t = h.state().drawn.transform.expect("the plot was drawn");
    let y = t.frame().center().y;
    let at = |x: f64| Pos2::new(t.position_from_point_x(x), y);
    let shift = Modifiers::SHIFT;
    h.event(Event::ModifiersChanged(shift));
    h.event(Event::PointerMoved(at(a)));
    h.step();
    let press = |pressed| Event::PointerButton {
        pos: if pressed { at(a) } else { at(b) },
        button: PointerButton::Primary,
        pressed,
        modifiers: shift,
    };
    h.event(press(true));
    h.step();
    for i in 1..=8 {
        let x = a + (b - a) * f64::from(i) / 8.0;
        h.event(Event::PointerMoved(at(x)));
        h.step();
    }
    assert!(h.state().sites.drag.active(), "the drag did not start");
    h.event(press(false));
    h.step();
    h.event(Event::ModifiersChanged(Modifiers::NONE));
    h.step();
}

#[test]
fn the_panel_shows_where_the_selected_process_grows_in_the_range_chosen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store(dir.path());
    let mut h = Harness::builder()
        .with_size([1400.0, 1000.0])
        .with_max_steps(10_000)
        .build_ui_state(
            |ui, app: &mut App| app.show(ui),
            App::new(path, Saved::default()),
        );
    settle(&mut h);

    // The leak is selected first; the panel counts its leak window by default and says so.
    let app = h.state();
    let leak = app.rows.iter().find(|r| r.name == "grow_cache").unwrap();
    assert_eq!(leak.verdict, Some(Verdict::Leak), "{}", leak.reason);
    assert_eq!(app.sites.range, SiteRange::Leak);
    assert!(label_shown(&h, "Where it grows"));
    assert!(label_shown(&h, ", its leak window"));
    let data = app.sites.data.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(data.summary[0].function, "grow_cache");

    // The whole recording: grow_cache is 60 of 80 MiB, early_init 20.
    h.get_by_label("whole recording").click();
    settle(&mut h);
    assert!(label_shown(&h, "sites in the whole recording"));
    let data = h.state().sites.data.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(data.bytes, 80 * MIB);
    assert_eq!(data.summary[0].function, "grow_cache");
    assert_eq!(data.summary[1].function, "early_init");
    for text in [
        "grow_cache",
        "cache.c:41",
        "75 %",
        "60 MiB",
        "240",
        "early_init",
        "25 %",
    ] {
        assert!(label_shown(&h, text), "the table does not show {text}");
    }
    // The leak's frame is named after its own code, not memset beneath it.
    assert!(
        !h.state()
            .sites
            .data
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .summary
            .iter()
            .any(|s| s.function.contains("memset"))
    );
    // The flame graph: widths in proportion to bytes (to a pixel).
    let app = h.state();
    let one_px = 1.0 / app.sites.drawn.width;
    assert!(
        (flame_share(app, "grow_cache") - 0.75).abs() <= one_px,
        "{}",
        flame_share(app, "grow_cache")
    );
    assert!((flame_share(app, "early_init") - 0.25).abs() <= one_px);
    assert!((flame_share(app, "main") - 1.0).abs() <= one_px);
    // The layout holds still from frame to frame (a panel that grew by itself would move it).
    let rects = |h: &Harness<'_, App>| -> Vec<(String, egui::Rect)> {
        let d = &h.state().sites.drawn;
        d.rects.iter().map(|r| (r.name.clone(), r.rect)).collect()
    };
    let before = rects(&h);
    h.run_steps(30);
    assert_eq!(rects(&h), before);
    let app = h.state();
    // Hovering a frame tells its full name, file:line, bytes and share.
    let at = app
        .sites
        .drawn
        .named("grow_cache")
        .next()
        .unwrap()
        .rect
        .center();
    h.hover_at(at);
    // egui shows a tooltip once the pointer rested (half a second of frames).
    h.run_steps(60);
    assert!(label_shown(
        &h,
        "60 MiB, 75 % of the growth in this range; 240 samples"
    ));
    h.remove_cursor();
    h.run_steps(2);

    // The plot's view: the plot fits the whole history, so everything is counted.
    h.get_by_label("plot's view").click();
    settle(&mut h);
    assert!(label_shown(&h, ", the plot's view"));
    let data = h.state().sites.data.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(data.bytes, 80 * MIB);

    // A range shift-dragged on the plot from 100 s: early_init (at 5 s) drops out.
    shift_drag(&mut h, 100.0, 700.0);
    settle(&mut h);
    let app = h.state();
    let SiteRange::Selected(a, b) = app.sites.range else {
        panic!("the drag selected no range: {:?}", app.sites.range);
    };
    assert!((a - 100.0).abs() < 3.0 && b > 600.0, "{a} .. {b}");
    assert!(label_shown(&h, ", selected on the plot"));
    assert!(
        h.state()
            .drawn
            .items
            .iter()
            .any(|i| i == memtools_gui::plot::SITES_RANGE)
    );
    let data = app.sites.data.as_ref().unwrap().as_ref().unwrap();
    // Buckets at 100, 110, ... 590 s (one may sit on the edge the drag started from).
    assert!((49..=50).contains(&(data.bytes / MIB)), "{}", data.bytes);
    assert_eq!(data.summary.len(), 1);
    // (The verdict's evidence, in the right panel, still names it: it counts the leak window.)
    assert!(!data.summary.iter().any(|s| s.function == "early_init"));
    assert_eq!(app.sites.drawn.named("early_init").count(), 0);
    assert!(label_shown(&h, "100 %"));
    assert!((flame_share(app, "grow_cache") - 1.0).abs() <= one_px);

    // Click grow_cache in the flame graph to zoom into it, then back out.
    h.get_by_label("grow_cache 100 %").click();
    h.run_steps(2);
    assert_eq!(h.state().sites.drawn.zoomed, "grow_cache");
    assert!(label_shown(&h, "zoomed into grow_cache"));
    h.get_by_label("whole graph").click();
    h.run_steps(2);
    assert_eq!(h.state().sites.drawn.zoomed, "all");

    // A process whose stacks are one frame deep: the panel says why no site is named.
    h.get_by_label("flat").click();
    settle(&mut h);
    let data = h.state().sites.data.as_ref().unwrap().as_ref().unwrap();
    assert!(data.shallow);
    assert!(label_shown(&h, "where it grows: unknown"));
    assert!(label_shown(&h, "-fno-omit-frame-pointer"));
    assert!(!label_shown(&h, "memset"));

    // A session that recorded no sites shows no panel.
    let old = {
        let app = h.state();
        let Some(Ok(list)) = &app.sessions else {
            panic!("no sessions")
        };
        list.iter().map(|s| s.id).min().unwrap()
    };
    h.state_mut().select_session(old);
    settle(&mut h);
    assert!(h.state().loaded.as_ref().is_some_and(|l| !l.has_sites));
    assert!(!label_shown(&h, "Where it grows"));
}

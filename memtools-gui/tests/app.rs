//! The app driven headless through egui_kittest over real stores made here: what a person sees
//! and clicks, checked on the app's state and on the plot items it drew.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use memtools::analysis::{Algo, GIB, MIB, Verdict};
use memtools::model::{
    BackendKind, Metrics, NS_PER_SEC, NewSession, ProcessInfo, ProcessKey, ProcessLimits, Sample,
    TimeNs,
};
use memtools::store::{SessionWriter, Store};
use memtools_gui::problem::ProblemKind;
use memtools_gui::{App, Saved};

/// 2026-01-01: the older session starts here, the newer a day later.
const T0: TimeNs = 1_767_225_600 * NS_PER_SEC;

fn new_session(start: TimeNs, command: &str) -> NewSession {
    NewSession {
        host: "test".into(),
        kernel: "6.12".into(),
        backend: BackendKind::Procfs,
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

fn process(pid: u32, name: &str) -> ProcessInfo {
    ProcessInfo {
        key: ProcessKey {
            pid,
            start_time: u64::from(pid),
        },
        ppid: None,
        name: name.into(),
        cmdline: name.into(),
    }
}

/// Resident anonymous memory only (file and shmem 0), so `rss` is this value.
fn sample(t: TimeNs, bytes: f64) -> Sample {
    let metrics = Metrics {
        rss_anon: Some(bytes.max(0.0) as u64),
        rss_file: Some(0),
        rss_shmem: Some(0),
        ..Default::default()
    };
    Sample { time: t, metrics }
}

/// Deterministic noise in [-1, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn add(
    w: &mut SessionWriter<'_>,
    pid: u32,
    name: &str,
    start: TimeNs,
    f: impl Fn(f64) -> f64,
    n: usize,
) {
    let id = w
        .add_process(&process(pid, name), ProcessLimits::default())
        .expect("add process");
    for i in 0..n {
        let t = start + i as i64 * NS_PER_SEC;
        w.add_sample(id, &sample(t, f(i as f64)))
            .expect("add sample");
    }
}

/// An older one-process session and a newer one with a leak, a flat process, a borderline
/// one (a rise buried in noise: R^2 about 0.75) and one too short to judge.
fn suite_store(dir: &Path) -> PathBuf {
    let path = dir.join("suite.db");
    let store = Store::open(&path).expect("create store");
    let mut w = store
        .begin_session(&new_session(T0, "old-run"))
        .expect("session");
    add(&mut w, 50, "old", T0, |_| 10.0 * MIB as f64, 100);
    w.finish(T0 + 100 * NS_PER_SEC, None).expect("finish");

    let t1 = T0 + 86_400 * NS_PER_SEC;
    let mut w = store
        .begin_session(&new_session(t1, "pytest -x tests/"))
        .expect("session");
    let mib = MIB as f64;
    add(&mut w, 101, "grower", t1, |t| 50.0 * mib + mib * t, 600);
    let noise = std::cell::RefCell::new(Lcg(7));
    add(
        &mut w,
        102,
        "steady",
        t1,
        |_| 30.0 * mib + 0.01 * mib * noise.borrow_mut().next(),
        600,
    );
    let noise = std::cell::RefCell::new(Lcg(42));
    add(
        &mut w,
        103,
        "borderline",
        t1,
        |t| 400.0 * mib + mib * t + 170.0 * mib * noise.borrow_mut().next(),
        600,
    );
    add(&mut w, 104, "tiny", t1, |_| 5.0 * mib, 5);
    // Two phases a test harness marked.
    w.begin_phase("test_setup", t1).expect("phase");
    w.end_phase("test_setup", t1 + 100 * NS_PER_SEC)
        .expect("phase");
    w.begin_phase("test_growth", t1 + 100 * NS_PER_SEC)
        .expect("phase");
    w.end_phase("test_growth", t1 + 600 * NS_PER_SEC)
        .expect("phase");
    w.finish(t1 + 600 * NS_PER_SEC, None).expect("finish");
    path
}

fn harness(path: &Path) -> Harness<'static, App> {
    let app = App::new(path.to_path_buf(), Saved::default());
    Harness::builder()
        .with_size([1400.0, 900.0])
        .with_max_steps(10_000)
        .build_ui_state(|ui, app: &mut App| app.show(ui), app)
}

/// Steps frames until the background jobs are done, then a few more so the UI shows them.
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

fn pid_of(app: &App, name: &str) -> Option<i64> {
    app.rows
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.process_id)
}

#[test]
fn newest_session_is_selected_and_its_top_leak_plotted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = suite_store(dir.path());
    let mut h = harness(&path);
    settle(&mut h);
    let app = h.state();
    let sessions = app.sessions.clone().expect("listed").expect("readable");
    assert_eq!(sessions.len(), 2);
    assert_eq!(app.selected_session, Some(sessions[0].id));
    assert_eq!(sessions[0].command.as_deref(), Some("pytest -x tests/"));
    // Leaks first by default, and the first row is plotted.
    assert_eq!(
        app.table_names().first().map(String::as_str),
        Some("grower")
    );
    assert_eq!(
        app.selected.iter().copied().collect::<Vec<_>>(),
        vec![pid_of(app, "grower").unwrap()]
    );
    assert!(
        app.drawn.items.contains(&"grower (101)".to_string()),
        "{:?}",
        app.drawn.items
    );
    // The phases the harness marked are drawn as bands.
    for phase in ["phase: test_setup", "phase: test_growth"] {
        assert!(
            app.drawn.items.contains(&phase.to_string()),
            "{:?}",
            app.drawn.items
        );
    }
    // Both sessions get verdict counts in the panel: the selected one first, then the other
    // in the background.
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.state().counts.len() < 2 {
        assert!(Instant::now() < deadline, "no counts for the older session");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    let app = h.state();
    assert_eq!(
        app.counts.get(&sessions[1].id),
        Some(&(0, 1, 0)),
        "{:?}",
        app.counts
    );
    assert!(app.counts[&sessions[0].id].0 >= 1);
    assert!(
        h.query_all_by_label_contains("0 leak, 1 ok, 0 insufficient")
            .count()
            >= 1
    );
    // The panel says what the session is.
    assert!(h.query_all_by_label_contains("pytest -x tests/").count() >= 1);
}

#[test]
fn clicking_a_process_plots_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(&suite_store(dir.path()));
    settle(&mut h);
    h.get_by_label("steady").click();
    h.run_steps(4);
    let app = h.state();
    assert_eq!(
        app.selected.iter().copied().collect::<Vec<_>>(),
        vec![pid_of(app, "steady").unwrap()]
    );
    assert!(
        app.drawn.items.contains(&"steady (102)".to_string()),
        "{:?}",
        app.drawn.items
    );
    assert!(!app.drawn.items.contains(&"grower (101)".to_string()));
    assert!(app.drawn.points > 0);
}

#[test]
fn sorting_and_filtering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(&suite_store(dir.path()));
    settle(&mut h);
    h.get_by_label("pid").click();
    h.run_steps(2);
    assert_eq!(
        h.state().table_names(),
        ["grower", "steady", "borderline", "tiny"]
    );
    h.get_by_label_contains("pid").click();
    h.run_steps(2);
    assert_eq!(
        h.state().table_names(),
        ["tiny", "borderline", "steady", "grower"]
    );
    h.get_by_label("peak").click();
    h.run_steps(2);
    assert_eq!(h.state().table_names()[0], "borderline");
    // The filter is the text field that starts empty (the store path is the other).
    let filter = h
        .get_all_by_role(Role::TextInput)
        .find(|n| n.value().unwrap_or_default().is_empty())
        .expect("filter field");
    filter.click();
    h.run_steps(1);
    h.get_all_by_role(Role::TextInput)
        .find(|n| n.is_focused())
        .expect("focused filter")
        .type_text("ER");
    h.run_steps(2);
    assert_eq!(h.state().saved.table.filter, "ER");
    let mut names = h.state().table_names();
    names.sort();
    assert_eq!(names, ["borderline", "grower"]);
}

#[test]
fn r2_threshold_flips_a_borderline_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(&suite_store(dir.path()));
    settle(&mut h);
    // LBR alone: the detector whose verdict the R^2 threshold decides.
    h.state_mut().saved.knobs.params.algo = Algo::Lbr;
    h.state_mut().request_analysis();
    settle(&mut h);
    let verdict = |h: &Harness<'_, App>| {
        let app = h.state();
        let id = pid_of(app, "borderline").expect("borderline row");
        app.result_of(id)
            .map(|r| (r.analysis.verdict, r.analysis.reason.clone()))
    };
    let (v, why) = verdict(&h).expect("analysed");
    assert_eq!(v, Verdict::Ok, "at R^2 0.9: {why}");
    h.get_by_role(Role::Slider).set_value_accesskit(0.5);
    h.run_steps(2);
    assert_eq!(h.state().saved.knobs.params.r2_threshold, 0.5);
    settle(&mut h);
    let (v, why) = verdict(&h).expect("analysed");
    assert_eq!(v, Verdict::Leak, "at R^2 0.5: {why}");
    // The clean leak and the flat process do not care.
    let app = h.state();
    let of = |name| {
        app.result_of(pid_of(app, name).unwrap())
            .map(|r| r.analysis.verdict)
    };
    assert_eq!(of("grower"), Some(Verdict::Leak));
    assert_eq!(of("steady"), Some(Verdict::Ok));
    assert_eq!(of("tiny"), Some(Verdict::Insufficient));
    // Reset to defaults: back to 0.9 (and the combined detector), and the verdicts with it.
    h.get_by_label("Reset to defaults").click();
    h.run_steps(2);
    settle(&mut h);
    assert_eq!(h.state().saved.knobs.params.r2_threshold, 0.9);
    assert_eq!(h.state().saved.knobs.params.algo, Algo::Combined);
}

fn vlt_file(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/memorytools-vlt")
        .join(name);
    assert!(
        p.is_file(),
        "the VLT recordings are missing: expected {}",
        p.display()
    );
    p
}

#[test]
fn vlt_377208_leak_shows_with_its_lbr_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vlt.db");
    let mut store = Store::open(&path).expect("store");
    memtools::report::memorytools::import_file(
        &mut store,
        &vlt_file("tdcsarv-dt0.5s-rev377208.csv.gz"),
    )
    .expect("import");
    drop(store);
    let mut h = harness(&path);
    settle(&mut h);
    let app = h.state();
    let leaks: Vec<_> = app
        .results
        .iter()
        .flatten()
        .filter(|r| r.analysis.verdict == Verdict::Leak)
        .map(|r| (r.process.info.key.pid, r.process.info.name.clone()))
        .collect();
    assert_eq!(leaks, vec![(1152220, "tdcsarvControl".to_string())]);
    assert_eq!(app.table_names()[0], "tdcsarvControl");
    // Virtual size with no address-space limit recorded: nothing bounds it, so no projection
    // to a limit is drawn, and LBR (which needs one) flags nothing.
    let name = "tdcsarvControl (1152220)";
    let items = &app.drawn.items;
    assert!(items.contains(&format!("LBR window: {name}")), "{items:?}");
    assert!(
        !items.iter().any(|i| i.starts_with("LBR projection")),
        "{items:?}"
    );
    // With a limit in the limit field, LBR projects to it.
    h.state_mut().saved.knobs.given_limit = Some(24 * GIB);
    h.state_mut().request_analysis();
    settle(&mut h);
    let app = h.state();
    // LBR itself flagged a window of it: the window drawn is the one that decided.
    let leak = app
        .results
        .iter()
        .flatten()
        .find(|r| r.process.info.key.pid == 1152220)
        .expect("analysed");
    let flagged = leak.analysis.overlay.segments.iter();
    assert!(flagged.filter_map(|s| s.lbr).any(|l| l.flagged));
    let items = &app.drawn.items;
    assert!(items.contains(&name.to_string()), "{items:?}");
    assert!(items.contains(&format!("LBR window: {name}")), "{items:?}");
    assert!(
        items
            .iter()
            .any(|i| i.starts_with(&format!("LBR fit: {name}"))),
        "{items:?}"
    );
    assert!(
        items
            .iter()
            .any(|i| i.starts_with(&format!("LBR projection: {name}"))),
        "{items:?}"
    );
    // The overlay goes when its box is unticked.
    h.get_by_label("LBR window and fit").click();
    h.run_steps(3);
    let items = &h.state().drawn.items;
    assert!(items.contains(&name.to_string()), "{items:?}");
    assert!(!items.iter().any(|i| i.starts_with("LBR")), "{items:?}");
}

fn problem_of(path: &Path) -> ProblemKind {
    let mut h = harness(path);
    settle(&mut h);
    match &h.state().sessions {
        Some(Err(p)) => {
            // The central area says what is wrong.
            assert!(
                h.query_all_by_label(&p.title).count() >= 1,
                "{} not shown",
                p.title
            );
            p.kind
        }
        other => panic!(
            "expected a problem, got {:?}",
            other.as_ref().map(|r| r.as_ref().map(Vec::len))
        ),
    }
}

#[test]
fn empty_and_error_states_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        problem_of(&dir.path().join("missing.db")),
        ProblemKind::NoStore
    );

    let empty = dir.path().join("empty.db");
    drop(Store::open(&empty).expect("store"));
    assert_eq!(problem_of(&empty), ProblemKind::EmptyStore);

    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a; 8192]).expect("write");
    assert_eq!(problem_of(&corrupt), ProblemKind::Corrupt);

    let newer = dir.path().join("newer.db");
    drop(Store::open(&newer).expect("store"));
    let conn = rusqlite::Connection::open(&newer).expect("sqlite");
    conn.pragma_update(None, "user_version", 999).expect("bump");
    drop(conn);
    assert_eq!(problem_of(&newer), ProblemKind::NewerSchema);

    let foreign = dir.path().join("foreign.db");
    let conn = rusqlite::Connection::open(&foreign).expect("sqlite");
    conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);")
        .expect("create");
    drop(conn);
    let bytes = std::fs::read(&foreign).expect("read");
    assert_eq!(problem_of(&foreign), ProblemKind::NotAStore);
    // Refused without a byte changed, and nothing left beside it.
    assert_eq!(std::fs::read(&foreign).expect("read"), bytes);
    for suffix in ["-wal", "-shm", "-journal"] {
        assert!(!dir.path().join(format!("foreign.db{suffix}")).exists());
    }
}

#[test]
fn a_store_in_a_read_only_place_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = suite_store(dir.path());
    let root = running_as_root();
    // Root may write anywhere its permissions say no: a read-only mount stops it too.
    let ro = dir.path().join("ro");
    let place = if root {
        std::fs::create_dir(&ro).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["--bind"])
            .arg(dir.path())
            .arg(&ro)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new("mount")
                .args(["-o", "remount,ro,bind"])
                .arg(&ro)
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "mounting read-only");
        ro.join("suite.db")
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555))
            .expect("chmod");
        path.clone()
    };
    let mut h = harness(&place);
    settle(&mut h);
    let listed = match &h.state().sessions {
        Some(Ok(sessions)) => sessions.len(),
        other => panic!("{:?}", other.as_ref().map(|r| r.as_ref().err())),
    };
    drop(h);
    if root {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&ro)
            .status();
    } else {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
    }
    assert_eq!(listed, 2);
}

/// Whether the tests run as root (CI does).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_session_being_recorded_updates_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("live.db");
    let store = Store::open(&path).expect("store");
    let mut w = store
        .begin_session(&new_session(T0, "live"))
        .expect("session");
    let a = w
        .add_process(&process(1, "first"), ProcessLimits::default())
        .expect("process");
    for i in 0..50 {
        w.add_sample(
            a,
            &sample(T0 + i * NS_PER_SEC, (10 + i) as f64 * MIB as f64),
        )
        .expect("sample");
    }
    w.flush().expect("flush");
    let mut h = harness(&path);
    settle(&mut h);
    assert_eq!(h.state().loaded.as_ref().map(|l| l.samples()), Some(50));
    // More samples and a new process while the app watches.
    let b = w
        .add_process(&process(2, "second"), ProcessLimits::default())
        .expect("process");
    for i in 50..80 {
        w.add_sample(
            a,
            &sample(T0 + i * NS_PER_SEC, (10 + i) as f64 * MIB as f64),
        )
        .expect("sample");
        w.add_sample(b, &sample(T0 + i * NS_PER_SEC, 5.0 * MIB as f64))
            .expect("sample");
    }
    w.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.state().loaded.as_ref().map(|l| l.samples()) != Some(110) {
        assert!(Instant::now() < deadline, "no live update");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    settle(&mut h);
    assert!(h.state().table_names().contains(&"second".to_string()));
    // The plot follows the new samples (79 s after the start) unless the user moved it.
    let view = h.state().plot_view().expect("plotted");
    assert!(view.1 >= 79.0, "the plot shows {view:?}");
}

#[test]
fn another_store_opens_from_the_store_bar_and_is_remembered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = suite_store(dir.path());
    let second = dir.path().join("second.db");
    let store = Store::open(&second).expect("store");
    let mut w = store
        .begin_session(&new_session(T0, "second-store-run"))
        .expect("session");
    add(&mut w, 7, "lonely", T0, |_| 10.0 * MIB as f64, 50);
    w.finish(T0 + 50 * NS_PER_SEC, None).expect("finish");
    drop(store);

    let mut h = harness(&first);
    settle(&mut h);
    let field = first.display().to_string();
    h.get_all_by_role(Role::TextInput)
        .find(|n| n.value().as_deref() == Some(field.as_str()))
        .expect("store field")
        .click();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_steps(1);
    h.get_all_by_role(Role::TextInput)
        .find(|n| n.is_focused())
        .expect("focused store field")
        .type_text(&second.display().to_string());
    h.run_steps(1);
    h.get_by_label("Open").click();
    h.run_steps(2);
    settle(&mut h);
    let app = h.state();
    assert_eq!(app.store_path, second);
    assert_eq!(app.table_names(), ["lonely"]);
    assert_eq!(app.saved.recent, [second.clone(), first.clone()]);
}

#[test]
fn reading_a_big_session_shows_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.db");
    let store = Store::open(&path).expect("store");
    let mut w = store
        .begin_session(&new_session(T0, "big"))
        .expect("session");
    let id = w
        .add_process(&process(9, "big"), ProcessLimits::default())
        .expect("process");
    for i in 0..1_000_000i64 {
        let s = sample(T0 + i * 10_000_000, (100 + i % 1000) as f64 * MIB as f64);
        w.add_sample(id, &s).expect("sample");
    }
    w.finish(T0 + 10_000 * NS_PER_SEC, None).expect("finish");
    drop(store);
    // One frame at build time (the default harness runs frames until the load is over).
    let app = App::new(path.clone(), Saved::default());
    let mut h = Harness::builder()
        .with_size([1400.0, 900.0])
        .with_max_steps(1)
        .build_ui_state(|ui, app: &mut App| app.show(ui), app);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = None;
    while h.state().busy() {
        h.step();
        if let memtools_gui::app::LoadState::Loading { done, total } = h.state().load
            && done > 0
            && done < total
            && h.query_all_by_label_contains("reading").count() >= 1
        {
            seen = Some((done, total));
        }
        assert!(Instant::now() < deadline, "the app stayed busy");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (done, total) = seen.expect("a progress bar part way through the read");
    assert_eq!(total, 1_000_000, "{done}");
    settle(&mut h);
    assert_eq!(
        h.state().loaded.as_ref().map(|l| l.samples()),
        Some(1_000_000)
    );
}

/// eframe's storage, in memory.
#[derive(Default)]
struct Memory(std::collections::HashMap<String, String>);

impl eframe::Storage for Memory {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

#[test]
fn recent_stores_overlays_sort_and_parameters_are_remembered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = suite_store(dir.path());
    let mut h = harness(&path);
    settle(&mut h);
    h.get_by_label("trend").click();
    h.get_by_label("peak").click();
    h.run_steps(2);
    h.state_mut().saved.knobs.params.r2_threshold = 0.75;
    let mut storage = Memory::default();
    eframe::App::save(h.state_mut(), &mut storage);
    let saved: Saved = eframe::get_value(&storage, eframe::APP_KEY).expect("saved");
    assert_eq!(saved.recent, [path]);
    assert!(saved.overlays.trend);
    assert_eq!(saved.table.sort, memtools_gui::table::Column::Peak);
    assert_eq!(saved.knobs.params.r2_threshold, 0.75);
}

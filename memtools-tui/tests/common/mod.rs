//! Real stores written here with the recorder's own writer, followed and judged as the view
//! does it, and frames drawn into ratatui's TestBackend and read back as text.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use memtools::analysis::{GIB, MIB, Params};
use memtools::model::{
    BackendKind, Metrics, NS_PER_SEC, NewSession, ProcessInfo, ProcessKey, Sample, TimeNs,
};
use memtools::store::{ProcessId, SessionSelector, SessionWriter, Store};
use memtools_tui::follow::Follower;
use memtools_tui::snapshot::Snapshot;
use memtools_tui::state::View;
use memtools_tui::theme::Theme;
use memtools_tui::worker::analyse;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;

/// 2026-01-01.
pub const T0: TimeNs = 1_767_225_600 * NS_PER_SEC;

pub const COLOR: Theme = Theme {
    color: true,
    unicode: true,
};

pub fn session(start: TimeNs) -> NewSession {
    NewSession {
        host: "test".into(),
        kernel: "6.12".into(),
        backend: BackendKind::Procfs,
        backend_reason: "test".into(),
        interval_ns: Some(NS_PER_SEC),
        command: Some("pytest -x tests/".into()),
        source: None,
        start,
        monotonic_offset_ns: None,
        mem_total: Some(2 * GIB),
        threads_max: None,
        pid_max: None,
    }
}

pub fn process(pid: u32, ppid: Option<u32>, name: &str) -> ProcessInfo {
    ProcessInfo {
        key: ProcessKey {
            pid,
            start_time: u64::from(pid),
        },
        ppid,
        name: name.into(),
        cmdline: format!("{name} --serve"),
    }
}

/// Resident anonymous memory only, so `rss` is this value; page faults twice the MiB.
pub fn sample(t: TimeNs, bytes: u64) -> Sample {
    let metrics = Metrics {
        rss_anon: Some(bytes),
        rss_file: Some(0),
        rss_shmem: Some(0),
        page_faults: Some(bytes / MIB * 2),
        ..Default::default()
    };
    Sample { time: t, metrics }
}

/// A store in a temporary directory.
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

impl TestStore {
    pub fn new() -> TestStore {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(dir.path().join("s.db")).expect("a store");
        TestStore { dir, store }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("s.db")
    }
}

/// Writes `n` one-second samples from `from` (seconds after T0) of `value(i)` for a process.
pub fn write(
    w: &mut SessionWriter<'_>,
    id: ProcessId,
    from: i64,
    n: i64,
    value: impl Fn(i64) -> u64,
) {
    for i in from..from + n {
        w.add_sample(id, &sample(T0 + i * NS_PER_SEC, value(i)))
            .expect("a sample");
    }
    w.flush().expect("a flush");
}

/// The four processes most tests look at, 60 s of them: a leak (1 MiB/s), a flat service, a
/// slight wobble, and a child of the leak that grows a little at the end.
pub fn four_processes(t: &TestStore) -> SessionWriter<'_> {
    let mut w = t.store.begin_session(&session(T0)).expect("a session");
    let leak = w
        .add_process(&process(100, Some(1), "leaky"), None)
        .unwrap();
    let flat = w
        .add_process(&process(200, Some(1), "steady"), None)
        .unwrap();
    let wobble = w
        .add_process(&process(300, Some(1), "wobbly"), None)
        .unwrap();
    let child = w
        .add_process(&process(101, Some(100), "helper"), None)
        .unwrap();
    write(&mut w, leak, 0, 60, |i| 10 * MIB + i as u64 * MIB);
    write(&mut w, flat, 0, 60, |_| 20 * MIB);
    write(&mut w, wobble, 0, 60, |i| 30 * MIB + (i as u64 % 3) * 4096);
    write(&mut w, child, 0, 60, |i| {
        5 * MIB + if i > 50 { MIB } else { 0 }
    });
    w
}

/// Follows `latest` in the store at `t` once and judges every process, as the worker does.
pub fn followed(t: &TestStore) -> Follower {
    let mut f = Follower::new(&t.path(), SessionSelector::Latest, None);
    judge(&mut f);
    f
}

/// Reads what is new, then runs the pipeline over what is due.
pub fn judge(f: &mut Follower) {
    f.poll();
    if let Some(job) = f.due_job() {
        let generation = job.generation;
        let results = analyse(job, &Params::default(), 16 * GIB);
        f.accept(generation, &results, std::time::Duration::ZERO);
    }
}

pub fn view(f: &mut Follower, theme: Theme) -> View {
    View::new(Arc::new(f.snapshot()), theme)
}

pub fn terminal(width: u16, height: u16) -> Terminal<TestBackend> {
    Terminal::new(TestBackend::new(width, height)).expect("a test terminal")
}

/// Draws the view and gives the screen back as lines of text.
pub fn draw(term: &mut Terminal<TestBackend>, view: &mut View) -> Vec<String> {
    term.draw(|f| memtools_tui::draw::frame(f, view))
        .expect("a frame");
    lines(term.backend().buffer())
}

pub fn lines(buffer: &Buffer) -> Vec<String> {
    let width = buffer.area.width as usize;
    buffer
        .content
        .chunks(width)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
        .collect()
}

/// The names in the table, top to bottom (the table starts after the header and its heading).
pub fn names(screen: &[String]) -> Vec<String> {
    screen
        .iter()
        .skip(4)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let pid = words.next()?;
            pid.parse::<u32>().ok()?;
            words.next().map(str::to_string)
        })
        .collect()
}

/// The table line of the process named `name`.
pub fn line_of<'a>(screen: &'a [String], name: &str) -> &'a str {
    screen
        .iter()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in\n{}", screen.join("\n")))
}

/// Snapshot whose follower is gone: for the view alone.
pub fn snapshot(f: &mut Follower) -> Arc<Snapshot> {
    Arc::new(f.snapshot())
}

/// The text under `heading` in the line of the process named `name` (from the heading's first
/// column to the next heading's).
pub fn cell(screen: &[String], name: &str, heading: &str) -> String {
    let head: Vec<char> = screen[3].chars().collect();
    let text: String = head.iter().collect();
    let at = |h: &str| {
        text.find(h)
            .map(|byte| text[..byte].chars().count())
            .unwrap_or_else(|| panic!("no heading {h} in {text}"))
    };
    let start = at(heading);
    let end = (start + heading.chars().count()..head.len())
        .find(|&i| head[i] != ' ' && head[i - 1] == ' ')
        .unwrap_or(head.len());
    let line: Vec<char> = line_of(screen, name).chars().collect();
    line[start.min(line.len())..end.min(line.len())]
        .iter()
        .collect::<String>()
        .trim()
        .to_string()
}

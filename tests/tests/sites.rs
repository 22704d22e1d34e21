//! Growth sites end to end: `record --sites` with the real kernel sampler on a real C program
//! compiled here, then `sites` in each format. Needs root (eBPF) and a C compiler (`cargo
//! xtask setup` installs one); says SKIPPED otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestStore, is_root, skip};

const SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/programs/grow_cache.c");
const RUST_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/programs/grow_cache.rs");
/// The line of the Rust grow_cache that allocates (and fills) the leaked block.
const RUST_LEAK_LINE: u64 = 8;
/// The line of grow_cache that touches the leaked memory.
const LEAK_LINE: u64 = 14;

const BRK_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/programs/grow_by_brk.c");
const MMAP_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/programs/grow_by_mmap.c");
const SMALL_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/programs/map_small.c");
/// The lines of grow_by_brk.c's sbrk and grow_by_mmap.c's mmap and malloc.
const SBRK_LINE: u64 = 9;
const MMAP_LINE: u64 = 13;
const MALLOC_LINE: u64 = 21;

/// Optimized, with line tables and frame pointers: how a program gets named stacks.
const FRAME_POINTERS: &[&str] = &["-O1", "-g", "-fno-omit-frame-pointer"];

/// Compiles the test program with `flags` into `dir`.
fn compile(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    compile_source(dir, name, SOURCE, flags)
}

/// Compiles a C program with `flags` into `dir`.
fn compile_source(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(source)
        .status()
        .expect("running cc (cargo xtask setup installs it)");
    assert!(status.success(), "cc {flags:?} {source} failed");
    out
}

/// A process's call sites (`sites --format json`'s `calls`) of `cause`, for the whole session.
fn call_sites(store: &TestStore, cause: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let out = store.ok(&[
        "sites", "--window", "all", "--cause", cause, "--format", "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("sites --format json");
    let calls = report[0]["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls: {report}"))
        .clone();
    (report, calls)
}

/// The call site named after `function`.
fn site_of<'a>(calls: &'a [serde_json::Value], function: &str) -> Option<&'a serde_json::Value> {
    calls.iter().find(|s| s["function"] == function)
}

/// `top` on a store in a tmux server of its own (its own socket); the server ends with it.
struct Top {
    socket: String,
}

impl Top {
    fn start(store: &Path) -> Top {
        let top = Top {
            socket: format!("memtools-sites-test-{}", std::process::id()),
        };
        let command = format!(
            "'{}' top --store '{}' --session latest",
            common::memtools_user().display(),
            store.display()
        );
        let status = top
            .tmux()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", "main"])
            .args(["-x", "400", "-y", "40"])
            .arg(command)
            .status()
            .expect("tmux not found: `cargo xtask setup` installs it (Debian package tmux)");
        assert!(status.success(), "tmux new-session failed");
        top
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]).env("LANG", "C.UTF-8");
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// Opens the first process's chart and waits for `what` on the screen.
    fn chart_shows(&self, what: &str) -> String {
        let start = Instant::now();
        loop {
            let _ = self
                .tmux()
                .args(["send-keys", "-t", "main", "Enter"])
                .status();
            std::thread::sleep(Duration::from_millis(500));
            let out = self
                .tmux()
                .args(["capture-pane", "-p", "-t", "main"])
                .output()
                .expect("tmux capture-pane");
            let screen = String::from_utf8_lossy(&out.stdout).into_owned();
            if screen.contains(what) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the chart never showed {what:?}:\n{screen}"
            );
        }
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

fn ready(test: &str) -> bool {
    if !is_root() {
        skip(test, "loading eBPF programs needs root");
        return false;
    }
    true
}

/// `record --backend ebpf --sites -- program`, which must succeed.
fn record(store: &TestStore, program: &Path) {
    record_with(store, program, &["--sites"]);
}

/// `record --backend ebpf OPTIONS -- program`, which must succeed.
fn record_with(store: &TestStore, program: &Path, options: &[&str]) {
    let mut args = vec!["record", "--backend", "ebpf"];
    args.extend_from_slice(options);
    args.extend(["--", program.to_str().expect("a UTF-8 path")]);
    let out = store.run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "record failed: {stderr}");
}

/// The share of the sites in `function` (churn's, which must stay small).
fn share_of(sites: &[serde_json::Value], function: &str) -> f64 {
    sites
        .iter()
        .filter(|s| s["function"] == function)
        .map(|s| s["share"].as_f64().unwrap_or(0.0))
        .sum()
}

fn sites_json(store: &TestStore, window: &str) -> serde_json::Value {
    let out = store.ok(&["sites", "--window", window, "--format", "json"]);
    serde_json::from_str(&out).expect("sites --format json is JSON")
}

#[test]
fn the_leaking_function_is_the_top_site_with_file_and_line_and_the_churn_is_small() {
    if !ready("the_leaking_function_is_the_top_site") {
        return;
    }
    let store = TestStore::new();
    let program = compile(store.dir.path(), "grow_cache", FRAME_POINTERS);
    // Recorded as CI would: the leak fails the run, and the Markdown report links its flame
    // graph.
    let md = store.dir.path().join("leaks.md");
    let spec = format!("markdown:{}", md.display());
    let out = store.run(&[
        "record",
        "--backend",
        "ebpf",
        "--sites",
        "--fail-on-leak",
        "--report",
        &spec,
        "--",
        program.to_str().expect("UTF-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("grew most in grow_cache"), "{summary}");
    // The leak's window (the default): the process leaks, and grew most in grow_cache.
    let report = sites_json(&store, "leak");
    let processes = report.as_array().expect("an array of processes");
    assert_eq!(processes.len(), 1, "{report}");
    let process = &processes[0];
    assert_eq!(process["name"], "grow_cache");
    let sites = process["sites"].as_array().expect("sites");
    let top = &sites[0];
    assert_eq!(top["function"], "grow_cache", "{report}");
    assert!(
        top["file"].as_str().unwrap_or("").ends_with("grow_cache.c"),
        "{report}"
    );
    assert_eq!(top["line"], LEAK_LINE, "{report}");
    assert!(top["share"].as_f64().unwrap_or(0.0) > 0.8, "{report}");
    assert!(top["bytes"].as_u64().unwrap_or(0) > 8 << 20, "{report}");
    assert!(top["samples"].as_u64().unwrap_or(0) > 10, "{report}");
    let churn = share_of(sites, "churn");
    assert!(churn < 0.05, "churn carries {churn}: {report}");
    // Largest first.
    let bytes: Vec<u64> = sites.iter().filter_map(|s| s["bytes"].as_u64()).collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{report}");

    // Its brk calls (malloc growing the heap, deep in the C library) are its own table, and
    // name the function that called malloc, not main above it.
    let (calls_report, calls) = call_sites(&store, "calls");
    assert_eq!(calls[0]["function"], "grow_cache", "{calls_report}");
    assert_eq!(calls[0]["cause"], "brk", "{calls_report}");
    assert_eq!(calls[0]["line"], LEAK_LINE - 1, "{calls_report}");
    assert!(
        calls[0]["share"].as_f64().unwrap_or(0.0) > 0.8,
        "{calls_report}"
    );

    // detect names the leak's top three sites, in its table and its JSON.
    let detect = store.ok(&["detect"]);
    assert!(
        detect.contains("grew most in grow_cache (grow_cache.c:14), 9"),
        "{detect}"
    );
    let out = store.run(&["detect", "--format", "json", "--fail-on-leak"]);
    assert_eq!(out.status.code(), Some(3));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("detect's JSON");
    let named = json["processes"][0]["sites"].as_array().expect("sites");
    assert!(!named.is_empty() && named.len() <= 3, "{json}");
    assert_eq!(named[0]["function"], "grow_cache", "{json}");

    // The Markdown report links the leak's flame graph, written beside its plot.
    let text = std::fs::read_to_string(&md).expect("the Markdown report");
    assert!(text.contains("grew most in grow_cache"), "{text}");
    let link = text
        .lines()
        .find(|l| l.contains("flame graph]("))
        .unwrap_or_else(|| panic!("no flame graph link: {text}"));
    let target = link.rsplit_once("](").map(|(_, t)| t.trim_end_matches(')'));
    let flame = store.dir.path().join(target.expect("a link"));
    let flame = std::fs::read_to_string(&flame).expect("the linked flame graph");
    assert!(flame.contains("<svg") && flame.contains("grow_cache"));

    // The terminal view's chart of the process names the site with its evidence.
    let top = Top::start(&store.path());
    top.chart_shows("grew most in grow_cache (grow_cache.c:14)");
    drop(top);

    // Text, folded stacks (outermost first, down to grow_cache) and a flame graph file.
    let text = store.ok(&["sites"]);
    assert!(text.contains("grow_cache  grow_cache.c:14"), "{text}");
    let folded = store.ok(&["sites", "--window", "all", "--format", "folded"]);
    assert!(
        folded.lines().any(|l| l.contains(";main;grow_cache;")),
        "{folded}"
    );
    let svg = store.dir.path().join("grow.svg");
    store.ok(&[
        "sites",
        "--format",
        "svg",
        "-o",
        svg.to_str().expect("UTF-8"),
    ]);
    let drawn = std::fs::read_to_string(&svg).expect("the flame graph was written");
    assert!(drawn.contains("<svg") && drawn.contains("grow_cache"));
    // A link planted at the output path is refused, and its target left alone.
    let victim = store.dir.path().join("victim");
    std::fs::write(&victim, "precious").expect("writing");
    let link = store.dir.path().join("link.svg");
    std::os::unix::fs::symlink(&victim, &link).expect("symlink");
    let out = store.run(&[
        "sites",
        "--format",
        "svg",
        "-o",
        link.to_str().expect("UTF-8"),
    ]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(&victim).expect("reading"),
        "precious"
    );
}

/// The other fault sampler (a countdown per process at the page fault tracepoints) names the
/// same leak: the top site of the leak's window is grow_cache at its line, the churn small.
#[test]
fn the_countdown_sampler_names_the_same_leaking_function() {
    if !ready("the_countdown_sampler_names_the_same_leaking_function") {
        return;
    }
    let store = TestStore::new();
    let program = compile(store.dir.path(), "grow_cache", FRAME_POINTERS);
    record_with(
        &store,
        &program,
        &["--sites", "--sites-sampler", "countdown"],
    );
    let report = sites_json(&store, "leak");
    let sites = report[0]["sites"].as_array().expect("sites");
    let top = &sites[0];
    assert_eq!(top["function"], "grow_cache", "{report}");
    assert_eq!(top["line"], LEAK_LINE, "{report}");
    assert!(top["share"].as_f64().unwrap_or(0.0) > 0.8, "{report}");
    assert!(top["samples"].as_u64().unwrap_or(0) > 10, "{report}");
    let churn = share_of(sites, "churn");
    assert!(churn < 0.05, "churn carries {churn}: {report}");
}

/// A process that grows and exits between two drains (here within one 2 s interval) is gone
/// when its stacks are symbolized: they are named from the maps kept at its exec, its own
/// function and the C library's alike.
#[test]
fn a_process_gone_before_the_drain_is_named_from_its_kept_maps() {
    if !ready("a_process_gone_before_the_drain_is_named_from_its_kept_maps") {
        return;
    }
    let store = TestStore::new();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/programs/grow_and_exit.c");
    let program = compile_source(store.dir.path(), "grow_and_exit", source, FRAME_POINTERS);
    record_with(&store, &program, &["--sites", "--interval", "2s"]);
    let report = sites_json(&store, "all");
    let sites = report[0]["sites"].as_array().expect("sites");
    let top = &sites[0];
    assert_eq!(top["function"], "grow_and_exit", "{report}");
    assert!(
        top["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("grow_and_exit.c"),
        "{report}"
    );
    assert!(top["share"].as_f64().unwrap_or(0.0) > 0.8, "{report}");
    // The whole stack of its faults, named from the files held since its exec, and the C
    // library's frames of its calls too. (A call's walk may keep a stale word that is no code
    // address: it stays bare, as it is in no executable mapping.)
    let folded = store.ok(&["sites", "--window", "all", "--format", "folded"]);
    assert!(
        folded
            .lines()
            .any(|l| l.contains("[resident:_page_faults];") && l.contains(";main;grow_and_exit")),
        "{folded}"
    );
    assert!(folded.contains(";_int_malloc;sysmalloc"), "{folded}");
}

#[test]
fn a_rust_program_built_with_frame_pointers_names_its_own_function_not_the_standard_library() {
    if !ready("a_rust_program_built_with_frame_pointers_names_its_own_function") {
        return;
    }
    let store = TestStore::new();
    let program = store.dir.path().join("grow_cache_rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "-O",
            "-g",
            "-C",
            "force-frame-pointers=yes",
            "-o",
        ])
        .arg(&program)
        .arg(RUST_SOURCE)
        .status()
        .expect("running rustc");
    assert!(status.success(), "rustc failed");
    record(&store, &program);
    let report = sites_json(&store, "leak");
    let sites = report[0]["sites"].as_array().expect("sites");
    let top = &sites[0];
    assert_eq!(top["function"], "grow_cache::grow_cache", "{report}");
    assert!(
        top["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("grow_cache.rs"),
        "{report}"
    );
    assert_eq!(top["line"], RUST_LEAK_LINE, "{report}");
    assert!(top["share"].as_f64().unwrap_or(0.0) > 0.8, "{report}");
    let churn = share_of(sites, "grow_cache::churn");
    assert!(churn < 0.05, "churn carries {churn}: {report}");
}

#[test]
fn a_program_without_frame_pointers_gets_the_clear_message_and_no_site() {
    if !ready("a_program_without_frame_pointers_gets_the_clear_message") {
        return;
    }
    let store = TestStore::new();
    let program = compile(
        store.dir.path(),
        "grow_cache_nofp",
        &["-O2", "-g", "-fomit-frame-pointer"],
    );
    record(&store, &program);
    let report = sites_json(&store, "all");
    let process = &report[0];
    assert_eq!(
        process["sites"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    let problem = process["problem"].as_str().unwrap_or("");
    assert!(problem.contains("frame pointers"), "{report}");
    assert!(problem.contains("-fno-omit-frame-pointer"), "{report}");
    let text = store.ok(&["sites", "--window", "all"]);
    assert!(text.contains("one frame deep"), "{text}");
    let detect = store.ok(&["detect"]);
    assert!(detect.contains("build with frame pointers"), "{detect}");
    assert!(!detect.contains("grew most in"), "{detect}");
}

#[test]
fn a_session_without_sites_says_how_to_get_them() {
    let store = TestStore::new();
    store.ok(&["record", "--backend", "procfs", "--", "/bin/true"]);
    let out = store.run(&["sites"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("record --sites"), "{stderr}");
    // --sites is refused with /proc before anything runs.
    let out = store.run(&[
        "record",
        "--backend",
        "procfs",
        "--sites",
        "--",
        "/bin/true",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs the eBPF backend"), "{stderr}");
    // resymbolize never creates a store at a path that has none.
    let missing = store.dir.path().join("mistyped.db");
    let out = store.run(&["resymbolize", "--store", missing.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(!missing.exists(), "nothing created at a mistyped path");
    let out = store.run(&["resymbolize"]);
    assert!(!out.status.success(), "a session without sites is refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no growth sites"), "{stderr}");
}

#[test]
fn a_session_recorded_from_a_stripped_binary_is_named_again_from_the_unstripped_build() {
    if !ready("a_session_recorded_from_a_stripped_binary_is_named_again") {
        return;
    }
    let store = TestStore::new();
    // The developer's build, with symbols and DWARF; CI runs a stripped copy of it (same
    // build-id), which is gone by the time the session is looked at elsewhere.
    let dev = store.dir.path().join("dev");
    let ci = store.dir.path().join("ci");
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::create_dir_all(&ci).unwrap();
    let unstripped = compile(&dev, "grow_cache", FRAME_POINTERS);
    let stripped = ci.join("grow_cache");
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(&unstripped)
        .status()
        .expect("running strip (binutils, with the C compiler)");
    assert!(status.success());
    record(&store, &stripped);
    std::fs::remove_dir_all(&ci).unwrap();
    let named = |report: &serde_json::Value| -> bool {
        report[0]["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["function"] == "grow_cache")
    };
    let before = sites_json(&store, "all");
    assert!(
        !named(&before),
        "a stripped binary names no grow_cache: {before}"
    );
    let hint = store.run(&["sites", "--window", "all"]);
    assert!(
        String::from_utf8_lossy(&hint.stderr).contains("memtools-user resymbolize"),
        "sites says how to name the frames: {}",
        String::from_utf8_lossy(&hint.stderr)
    );

    // A directory that is not there is refused, and changes nothing.
    let out = store.run(&["resymbolize", "--search", "/nonexistent-memtools-dir"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a directory"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let said = store.ok(&["resymbolize", "--search", dev.to_str().unwrap()]);
    assert!(said.contains("found"), "{said}");
    assert!(said.contains(&unstripped.display().to_string()), "{said}");
    let after = sites_json(&store, "all");
    let top = &after[0]["sites"][0];
    assert_eq!(top["function"], "grow_cache", "{after}");
    assert!(
        top["file"].as_str().unwrap_or("").ends_with("grow_cache.c"),
        "{after}"
    );
    assert_eq!(top["line"].as_u64(), Some(LEAK_LINE), "{after}");
    assert_eq!(
        top["bytes"], before[0]["sites"][0]["bytes"],
        "the counts are the ones recorded"
    );
}

#[test]
fn a_program_growing_by_brk_gets_a_call_site_naming_its_function() {
    if !ready("a_program_growing_by_brk_gets_a_call_site_naming_its_function") {
        return;
    }
    let store = TestStore::new();
    let program = compile_source(store.dir.path(), "grow_by_brk", BRK_SOURCE, FRAME_POINTERS);
    record(&store, &program);
    let (report, calls) = call_sites(&store, "brk");
    // sbrk's system call is made inside the C library, whose frame pointer register then holds
    // the old break: the site is still grow_heap, the line of its sbrk call.
    let top = &calls[0];
    assert_eq!(top["function"], "grow_heap", "{report}");
    assert_eq!(top["cause"], "brk", "{report}");
    assert!(
        top["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("grow_by_brk.c"),
        "{report}"
    );
    assert_eq!(top["line"], SBRK_LINE, "{report}");
    // A call of at least the bytes one sample stands for (127 pages) is always counted, with
    // the bytes it moved the break by.
    assert_eq!(top["samples"], 40, "{report}");
    assert_eq!(top["bytes"], 40u64 << 20, "{report}");
    assert!(top["share"].as_f64().unwrap_or(0.0) > 0.9, "{report}");
    assert!(
        calls.iter().all(|s| s["cause"] == "brk"),
        "--cause brk lists brk calls only: {report}"
    );
    // Asked for brk alone, no fault is listed, and the faults' own list is empty.
    assert_eq!(
        report[0]["sites"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    // Faults alone: no calls at all.
    let out = store.ok(&[
        "sites", "--window", "all", "--cause", "fault", "--format", "json",
    ]);
    let faults: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(faults[0].get("calls").is_none(), "{faults}");
    assert_eq!(faults[0]["sites"][0]["function"], "grow_heap", "{faults}");
    // Both (the default): two tables, each saying what its shares are of.
    let text = store.ok(&["sites", "--window", "all"]);
    let (resident, reserved) = text
        .split_once("address space reserved by brk/mmap calls")
        .unwrap_or_else(|| panic!("no table of calls: {text}"));
    assert!(
        resident.contains("resident memory, from sampled page faults"),
        "{text}"
    );
    assert!(resident.contains("grow_heap  grow_by_brk.c:"), "{text}");
    assert!(
        reserved.contains(&format!("brk  calls  grow_heap  grow_by_brk.c:{SBRK_LINE}")),
        "{text}"
    );
    // Folded stacks keep the two measures under frames of their own, inside the process's.
    let folded = store.ok(&["sites", "--window", "all", "--format", "folded"]);
    assert!(
        folded
            .lines()
            .any(|l| l.contains(";[reserved:_brk/mmap_calls];") && l.contains(";main;grow_heap;")),
        "{folded}"
    );
    assert!(
        folded
            .lines()
            .any(|l| l.contains(";[resident:_page_faults];") && l.contains(";grow_heap;")),
        "{folded}"
    );
}

#[test]
fn a_program_growing_by_mmap_gets_call_sites_naming_its_functions() {
    if !ready("a_program_growing_by_mmap_gets_call_sites_naming_its_functions") {
        return;
    }
    let store = TestStore::new();
    let program = compile_source(
        store.dir.path(),
        "grow_by_mmap",
        MMAP_SOURCE,
        FRAME_POINTERS,
    );
    record(&store, &program);
    let (report, calls) = call_sites(&store, "mmap");
    let direct = site_of(&calls, "map_direct").unwrap_or_else(|| panic!("{report}"));
    assert_eq!(direct["cause"], "mmap", "{report}");
    assert!(
        direct["file"]
            .as_str()
            .unwrap_or("")
            .ends_with("grow_by_mmap.c"),
        "{report}"
    );
    assert_eq!(direct["line"], MMAP_LINE, "{report}");
    assert_eq!(direct["samples"], 30, "{report}");
    assert_eq!(direct["bytes"], 30u64 << 20, "{report}");
    // malloc maps each 512 KiB block itself, deep in the C library (malloc, _int_malloc,
    // sysmalloc, mmap): the site is still the program's function that called malloc.
    let large = site_of(&calls, "malloc_large").unwrap_or_else(|| panic!("{report}"));
    assert_eq!(large["line"], MALLOC_LINE, "{report}");
    assert_eq!(large["samples"], 30, "{report}");
    let bytes = large["bytes"].as_u64().unwrap_or(0);
    assert!(
        (30 * (512 << 10)..=30 * (520 << 10)).contains(&bytes),
        "malloc's blocks and their headers: {bytes}: {report}"
    );
    // The two carry nearly everything the calls reserved, in proportion.
    let share = |s: &serde_json::Value| s["share"].as_f64().unwrap_or(0.0);
    assert!(share(direct) + share(large) > 0.95, "{report}");
    assert!(
        (share(direct) - 2.0 * share(large)).abs() < 0.05,
        "{report}"
    );
}

#[test]
fn without_sites_no_call_site_is_recorded() {
    if !ready("without_sites_no_call_site_is_recorded") {
        return;
    }
    let store = TestStore::new();
    let program = compile_source(store.dir.path(), "grow_by_brk", BRK_SOURCE, FRAME_POINTERS);
    record_with(&store, &program, &["--no-sites"]);
    // The process was recorded, its brk calls counted...
    let json = store.ok(&["export", "--format", "json"]);
    assert!(json.contains("grow_by_brk"), "{json}");
    // ...and no site of any cause was stored.
    let out = store.run(&["sites", "--window", "all", "--cause", "brk"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no growth sites"), "{stderr}");
}

/// Calls far smaller than the bytes one sample stands for are sampled, each with the chance of
/// its share of them, standing for a whole sample: far fewer stacks than calls, and bytes right
/// on average.
#[test]
fn small_calls_are_sampled_by_their_bytes() {
    if !ready("small_calls_are_sampled_by_their_bytes") {
        return;
    }
    let store = TestStore::new();
    let program = compile_source(store.dir.path(), "map_small", SMALL_SOURCE, FRAME_POINTERS);
    record(&store, &program);
    let (report, calls) = call_sites(&store, "mmap");
    let small = site_of(&calls, "map_small").unwrap_or_else(|| panic!("{report}"));
    // 4000 calls of 64 KiB, one sample per 127 pages (508 KiB): about 504 samples, each
    // standing for 508 KiB. Bounds of a quarter either way are over five standard deviations.
    let samples = small["samples"].as_u64().unwrap_or(0);
    assert!(
        (300..=800).contains(&samples),
        "{samples} samples: {report}"
    );
    let mapped = 4000u64 * (64 << 10);
    let bytes = small["bytes"].as_u64().unwrap_or(0);
    assert_eq!(bytes, samples * 127 * 4096, "{report}");
    assert!(
        bytes >= mapped * 3 / 4 && bytes <= mapped * 5 / 4,
        "{bytes} bytes counted for {mapped} mapped: {report}"
    );
}

/// With the eBPF backend, a recorded command gets its growth sites without asking: the leak
/// verdict can name its code.
#[test]
fn growth_sites_are_recorded_by_default_with_ebpf() {
    if !ready("growth_sites_are_recorded_by_default_with_ebpf") {
        return;
    }
    let store = TestStore::new();
    let program = compile_source(store.dir.path(), "grow_by_brk", BRK_SOURCE, FRAME_POINTERS);
    record_with(&store, &program, &[]);
    let (report, calls) = call_sites(&store, "brk");
    assert_eq!(calls[0]["function"], "grow_heap", "{report}");
    let out = store.ok(&[
        "sites", "--window", "all", "--cause", "fault", "--format", "json",
    ]);
    let faults: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(faults[0]["sites"][0]["function"], "grow_heap", "{faults}");
    // Following the whole machine, they come only when asked for (the sampler then attaches
    // on every CPU, or the recording is refused).
    let machine = TestStore::new();
    machine.ok(&["record", "--backend", "ebpf", "--all", "--duration", "1s"]);
    let out = machine.run(&["sites", "--window", "all"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no growth sites"), "{stderr}");
    machine.ok(&[
        "record",
        "--backend",
        "ebpf",
        "--all",
        "--sites",
        "--duration",
        "1s",
    ]);
}

/// A recording that ends while its process still runs stores the growth sites of its last
/// interval too: with a 10-minute interval the process's only time bucket never ends while
/// the recording runs (3 s), so its sites are stored only because the end drains every count
/// left and waits for their stacks to be named.
#[test]
fn a_recording_ending_while_its_process_runs_keeps_the_last_intervals_sites() {
    if !ready("a_recording_ending_while_its_process_runs_keeps_the_last_intervals_sites") {
        return;
    }
    let store = TestStore::new();
    let program = compile_source(store.dir.path(), "grow_by_brk", BRK_SOURCE, FRAME_POINTERS);
    // It sleeps a second, grows, then waits to be killed.
    let mut child = Command::new(&program)
        .arg("wait")
        .spawn()
        .expect("starting grow_by_brk");
    let pid = child.id().to_string();
    let out = store.run(&[
        "record",
        "--backend",
        "ebpf",
        "--pid",
        &pid,
        "--interval",
        "10m",
        "--duration",
        "3s",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (report, calls) = call_sites(&store, "brk");
    let top = &calls[0];
    assert_eq!(top["function"], "grow_heap", "{report}");
    assert_eq!(top["samples"], 40, "{report}");
    assert_eq!(top["bytes"], 40u64 << 20, "{report}");
}

//! Developer tasks, so a fresh checkout needs one command for each job:
//!
//! - `cargo xtask setup`: install what building and testing need, idempotently.
//! - `cargo xtask run -- ARGS`: set up, build memtools-user (release) and run it with ARGS, as
//!   root (through sudo when needed) so the eBPF backend can load.
//! - `cargo xtask test`: set up, then formatting, lints and every test.
//! - `cargo xtask bench [recorder|faults|overhead|analysis|gui|top|exporter|retention|all]`: the
//!   benchmarks whose figures the README quotes.

mod bench;
mod bench_top;
mod gui;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

const HELP: &str = "\
cargo xtask setup              install what building and testing need
cargo xtask run -- ARGS        set up, build and run memtools-user ARGS as root
                               (release; builds target/release/leak-sim too)
cargo xtask test [ARGS]        set up, check formatting and lints, run every test
                               (ARGS go to `cargo test`, e.g. a test name filter)
cargo xtask bench [WHICH]      recorder [counts|short] | faults | overhead [--rounds N] |
                               analysis | gui | top | exporter | retention | all
                               (default all)
cargo xtask screenshot [sites] the GUI on VLT revision 377208 in a real window under
                               Xvfb, into docs/screenshot-vlt-377208.png; `sites`: the
                               \"where it grows\" panel on a `record --sites` session
                               (root), into docs/screenshot-sites.png
";

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args
        .split_first()
        .map_or(("help", &[][..]), |(t, r)| (t.as_str(), r));
    match task {
        "setup" => setup::setup(),
        "run" => run_user(rest),
        "test" => test(rest),
        "bench" => bench::bench(rest),
        "screenshot" => gui::screenshot(rest),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task `{other}` (try `cargo xtask help`)"),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Runs a command in the workspace root, failing with its command line if it fails.
pub fn sh(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("xtask: $ {shown}");
    let status = cmd
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()))
}

fn run_user(args: &[String]) -> Result<()> {
    let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
    // A fresh machine gets the pinned nightly and bpf-linker first, so the eBPF backend is built.
    setup::setup()?;
    // The simulator too, so the README's first example has something that leaks to record.
    let (bin, _) = bench::build_release()?;
    // eBPF needs root: go through sudo when we are not (the recorder falls back to /proc and
    // says why if even that is not possible).
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root_already = unsafe { libc::geteuid() } == 0;
    let has_sudo = Command::new("sudo")
        .arg("-n")
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    let mut cmd = if root_already || !has_sudo {
        Command::new(&bin)
    } else {
        let mut c = Command::new("sudo");
        c.arg("--preserve-env=MEMTOOLS_STORE").arg(&bin);
        c
    };
    let status = cmd
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}

fn test(args: &[String]) -> Result<()> {
    setup::setup()?;
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    sh(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    sh(cargo().args(["test", "--workspace"]).args(args))?;
    if args.is_empty() {
        // The labelled corpus with 400 fresh seeds per family, the independent corpus with
        // 200 and the corpus of counts (threads, descriptors) with 400: too slow for a debug
        // build, so they are ignored tests there and run here, optimised, with their tables
        // printed.
        sh(cargo().args([
            "test",
            "--release",
            "-p",
            "memtools",
            "--test",
            "analysis_corpus",
            "--test",
            "analysis_corpus_independent",
            "--test",
            "analysis_corpus_counts",
            "--",
            "--ignored",
            "--nocapture",
        ]))?;
    }
    Ok(())
}

//! `cargo xtask setup`: everything a fresh machine lacks, installed idempotently.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::sh;

/// Installs the toolchain components and packages the build, the tests and the benchmarks use.
/// Each step checks first, so a second run does nothing.
pub fn setup() -> Result<()> {
    rust_components()?;
    if let Err(e) = ebpf_toolchain() {
        // The build falls back to an empty eBPF object and recording to /proc; say so rather
        // than fail everything (the eBPF tests say SKIPPED when the object was not built).
        eprintln!(
            "xtask: the eBPF toolchain could not be installed ({e:#}); memtools-user will build \
             without its eBPF backend"
        );
    }
    python_psutil()?;
    python_pytest()?;
    prometheus()?;
    if let Err(e) = apt_install(&BENCH_PACKAGES) {
        // Only `cargo xtask bench overhead` needs them; say so rather than fail the tests.
        eprintln!(
            "xtask: {} not installed ({e:#}); `cargo xtask bench overhead` needs them",
            BENCH_PACKAGES.join(", ")
        );
    }
    tmux()?;
    c_compiler()?;
    // Only `cargo xtask screenshot` needs a real window; the GUI's tests run headless.
    if let Err(e) = crate::gui::setup_gui() {
        eprintln!(
            "xtask: Xvfb and Mesa not installed ({e:#}); `cargo xtask screenshot` needs them"
        );
    }
    Ok(())
}

/// Debian packages `cargo xtask bench overhead` runs: stress-ng (the context-switch-heavy
/// workload), heaptrack and bpftrace (the tools a user would pick instead, measured beside
/// ours), perf (what stacks by frame pointers and by DWARF cost at the same sampling).
const BENCH_PACKAGES: [&str; 4] = ["stress-ng", "heaptrack", "bpftrace", "linux-perf"];

/// Installs Debian packages with apt-get, only those missing (so a second run does nothing).
pub fn apt_install(packages: &[&str]) -> Result<()> {
    let installed = |pkg: &str| {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
    };
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        sh(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    apt(&args)
}

fn rust_components() -> Result<()> {
    let have = |tool: &str| {
        Command::new("cargo")
            .args([tool, "--version"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have("fmt") || !have("clippy") {
        sh(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))?;
    }
    Ok(())
}

/// psutil, for the benchmark that compares the recorder with memorytools' way of polling.
fn python_psutil() -> Result<()> {
    let has = Command::new("python3")
        .args(["-c", "import psutil"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        let pip = sh(Command::new("python3").args(["-m", "pip", "install", "--quiet", "psutil"]));
        if let Err(e) = pip {
            // Only `cargo xtask bench` needs it; say so rather than fail the tests.
            eprintln!("xtask: psutil not installed ({e:#}); the psutil comparison will be skipped");
        }
    }
    Ok(())
}

/// pytest, for the end-to-end tests of the pytest plugin (contrib/pytest_memtools.py), and the
/// heavy libraries real suites import on the way (numpy, scipy, matplotlib: wheels, about a
/// minute to install), so those tests see the start-up of a real suite, cold and warm.
fn python_pytest() -> Result<()> {
    let has = Command::new("python3")
        .args(["-c", "import pytest, numpy, scipy, matplotlib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        sh(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "pytest",
            "numpy",
            "scipy",
            "matplotlib",
        ]))?;
    }
    Ok(())
}

/// promtool and the Prometheus server (Debian package `prometheus`), for the exporter's tests
/// (`promtool check metrics`, `promtool test rules`, a real server scraping `record --listen`).
/// The package's own service is not started: a policy-rc.d denying it is put in place while apt
/// runs, and only when the machine has none of its own (which is then left as it is).
fn prometheus() -> Result<()> {
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs("promtool") && runs("prometheus") {
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        sh(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
    // create_new: never over a file (or a link) that is there.
    let ours = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(policy)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(
                b"#!/bin/sh\n# cargo xtask setup: no service starts while it installs\nexit 101\n",
            )
        })
        .is_ok();
    let installed = apt(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "prometheus",
    ]);
    if ours {
        let _ = std::fs::remove_file(policy);
    }
    installed
}

/// tmux, the real terminal the live view's end-to-end tests and `cargo xtask bench top` run
/// it in (Debian package tmux).
fn tmux() -> Result<()> {
    let has = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if has {
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        sh(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "--no-install-recommends", "tmux"])
}

/// A C compiler and libc headers: the growth-sites test (tests/tests/sites.rs) compiles its
/// leaking program with and without frame pointers.
fn c_compiler() -> Result<()> {
    let has = Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && std::path::Path::new("/usr/include/stdio.h").exists();
    if has {
        return Ok(());
    }
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        sh(&mut cmd)
    };
    apt(&["update", "-qq"])?;
    apt(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "gcc",
        "libc6-dev",
    ])
}

/// The nightly the kernel side (memtools-ebpf) is built with: build-std needs a nightly, and
/// bpf-linker must link the very LLVM that nightly's rustc emits bitcode for, so the two are
/// pinned together (memtools-user/build.rs names the same toolchain).
pub const EBPF_TOOLCHAIN: &str = "nightly-2026-10-30";
/// The bpf-linker release that links LLVM 23, that nightly's.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// The pinned nightly with rust-src, and bpf-linker built against its LLVM.
fn ebpf_toolchain() -> Result<()> {
    let sysroot = || -> Option<PathBuf> {
        let out = Command::new("rustup")
            .args(["run", EBPF_TOOLCHAIN, "rustc", "--print", "sysroot"])
            .env("RUSTUP_AUTO_INSTALL", "0")
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    let has_src = |root: &PathBuf| root.join("lib/rustlib/src/rust/library/core").is_dir();
    if !sysroot().is_some_and(|r| has_src(&r)) {
        sh(Command::new("rustup").args([
            "toolchain",
            "install",
            EBPF_TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let root = sysroot().context("the eBPF toolchain did not install")?;
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        });
    if linker_ok {
        return Ok(());
    }
    // bpf-linker links the nightly's own libLLVM: give it a prefix whose lib/ holds the library
    // under its soname (for run time: the binary's rpath points there) and as libLLVM.so (for
    // the link). The prefix must stay, so it is not a temporary directory.
    let lib = std::fs::read_dir(root.join("lib"))
        .context("listing the eBPF toolchain's lib/")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .context("the eBPF toolchain has no libLLVM.so.* to link bpf-linker against")?;
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".local/share/memtools-llvm");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let soname = lib.file_name().context("libLLVM has no file name")?;
    for link in [prefix_lib.join(soname), prefix_lib.join("libLLVM.so")] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    sh(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ])
        .env("LLVM_PREFIX", &prefix)
        // Not the workspace's target dir: an install must not fight the build for its lock.
        .env_remove("CARGO_TARGET_DIR"))?;
    let runs = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        bail!("bpf-linker installed but does not run (is ~/.cargo/bin on PATH?)");
    }
    Ok(())
}

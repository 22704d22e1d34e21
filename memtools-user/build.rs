//! Builds the kernel side (memtools-ebpf) for the bpf target on the pinned nightly that
//! `cargo xtask setup` installs, and leaves the object in OUT_DIR for the eBPF backend to embed.
//! Without that nightly or bpf-linker, the build still succeeds with an empty object: `record`
//! then falls back to /proc and says how to get the real one.
//!
//! The nested cargo is run the way aya-build 0.2.0 runs it (same flags: build-std, BTF,
//! `bpf_target_arch`), but its output is kept quiet: aya-build forwards every line of it as a
//! `cargo:warning`, which floods every build log with `Compiling ...` lines. Here only the
//! kernel side's real compiler warnings are forwarded; a failed build prints the whole nested
//! output and says how to fix it. The nested build's target directory sits beside the outer
//! one (not in OUT_DIR), so a second build of memtools-user with other features reuses it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The nightly the eBPF crate is built with; bpf-linker links against its LLVM, so the two are
/// pinned together (see xtask/src/setup.rs).
const TOOLCHAIN: &str = "nightly-2026-10-30";
/// The eBPF crate's package name, and the name of its binary (the object) in OUT_DIR.
const PACKAGE: &str = "memtools-ebpf";
const OBJECT: &str = "memtools";

fn main() {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".to_string()));
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    let workspace = Path::new(&manifest).parent().unwrap_or(Path::new(".."));
    let ebpf_dir = workspace.join("memtools-ebpf");
    let common_dir = workspace.join("memtools-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!("cargo:rerun-if-env-changed=MEMTOOLS_NO_EBPF");
    let missing = if std::env::var_os("MEMTOOLS_NO_EBPF").is_some() {
        Some("MEMTOOLS_NO_EBPF is set".to_string())
    } else if !toolchain_installed() {
        Some(format!("the {TOOLCHAIN} toolchain is not installed"))
    } else if !Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        Some("bpf-linker is not installed".to_string())
    } else {
        None
    };
    if let Some(why) = missing {
        println!(
            "cargo:warning=memtools: eBPF object not built ({why}); run `cargo xtask setup` for \
             the eBPF backend. Recording will use /proc."
        );
        // An empty object: the loader sees it and reports why.
        let _ = std::fs::write(out_dir.join(OBJECT), b"");
        return;
    }
    if let Err(e) = build_ebpf(&ebpf_dir, &out_dir) {
        // The toolchain is there but the kernel side does not build: a real error.
        eprintln!("{e}");
        eprintln!(
            "memtools: building the eBPF object failed (above). Fix memtools-ebpf, or run \
             `cargo xtask setup` if the toolchain is broken; MEMTOOLS_NO_EBPF=1 builds without \
             the eBPF backend."
        );
        std::process::exit(1);
    }
}

/// Runs the nested cargo for the bpf target and copies the object into OUT_DIR.
fn build_ebpf(ebpf_dir: &Path, out_dir: &Path) -> Result<(), String> {
    let endian = std::env::var("CARGO_CFG_TARGET_ENDIAN").unwrap_or_default();
    let target = if endian == "big" {
        "bpfeb-unknown-none"
    } else {
        "bpfel-unknown-none"
    };
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let arch = if arch.starts_with("riscv64") {
        "riscv64".to_string()
    } else {
        arch
    };
    let target_dir = nested_target_dir(out_dir);
    let mut cmd = Command::new("rustup");
    cmd.args(["run", TOOLCHAIN, "cargo", "build", "--package", PACKAGE])
        .args([
            "--bins",
            "--message-format=json",
            "--release",
            "--target",
            target,
        ])
        .args(["-Z", "build-std=core"])
        .arg("--manifest-path")
        .arg(ebpf_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{arch}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"),
        )
        // The outer build's compiler and wrappers are the host toolchain's, not the nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("memtools: cannot start {cmd:?}: {e}"))?;
    // Drain stderr on its own thread so neither pipe can fill and stall the nested cargo.
    let mut stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut text);
        }
        text
    });
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    let status = child
        .wait()
        .map_err(|e| format!("memtools: waiting for {cmd:?}: {e}"))?;
    let errors = errors.join().unwrap_or_default();
    let mut object = None;
    let mut rendered = Vec::new();
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match msg["reason"].as_str() {
            Some("compiler-artifact") if msg["target"]["name"] == OBJECT => {
                object = msg["executable"].as_str().map(PathBuf::from);
            }
            Some("compiler-message") => {
                if let Some(text) = msg["message"]["rendered"].as_str() {
                    rendered.push(text.to_string());
                }
            }
            _ => {}
        }
    }
    if !status.success() {
        return Err(format!(
            "memtools: {cmd:?} failed ({status})\n{}\n{errors}",
            rendered.join("\n")
        ));
    }
    // Success: only the kernel side's own warnings reach the build log.
    for text in &rendered {
        for line in text.lines() {
            println!("cargo:warning={line}");
        }
    }
    let object =
        object.ok_or_else(|| format!("memtools: {cmd:?} built no `{OBJECT}` binary\n{errors}"))?;
    std::fs::copy(&object, out_dir.join(OBJECT)).map_err(|e| {
        format!(
            "memtools: copying {} into {}: {e}",
            object.display(),
            out_dir.display()
        )
    })?;
    Ok(())
}

/// `<target>/memtools-ebpf`, beside the outer build's profile directories, found from OUT_DIR
/// (`<target>[/<triple>]/<profile>/build/<pkg>-<hash>/out`); OUT_DIR itself if that fails.
fn nested_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .filter(|t| t.is_dir())
        .map_or_else(|| out_dir.join("ebpf-target"), |t| t.join(PACKAGE))
}

/// Whether rustup knows the pinned nightly with its sources (build-std needs rust-src).
fn toolchain_installed() -> bool {
    Command::new("rustup")
        .args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        // Never let the check itself install the toolchain.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .is_some_and(|sysroot| {
            Path::new(&sysroot)
                .join("lib/rustlib/src/rust/library/core")
                .is_dir()
        })
}

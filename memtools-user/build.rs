//! Builds the kernel side (memtools-ebpf) for the bpf target with aya-build, on the pinned
//! nightly that `cargo xtask setup` installs, and leaves the object in OUT_DIR for the eBPF
//! backend to embed. Without that nightly or bpf-linker, the build still succeeds with an
//! empty object: `record` then falls back to /proc and says how to get the real one.

use std::path::Path;
use std::process::Command;

/// The nightly the eBPF crate is built with; bpf-linker links against its LLVM, so the two are
/// pinned together (see xtask/src/setup.rs).
const TOOLCHAIN: &str = "nightly-2026-10-30";
/// The object's name in OUT_DIR (the eBPF crate's binary).
const OBJECT: &str = "memtools";

fn main() {
    let out_dir = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".to_string());
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_string());
    let workspace = Path::new(&manifest).parent().unwrap_or(Path::new(".."));
    let ebpf_dir = workspace.join("memtools-ebpf");
    let common_dir = workspace.join("memtools-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
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
        let _ = std::fs::write(Path::new(&out_dir).join(OBJECT), b"");
        return;
    }
    let root_dir = ebpf_dir.to_string_lossy().into_owned();
    let package = aya_build::Package {
        name: "memtools-ebpf",
        root_dir: &root_dir,
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(TOOLCHAIN)) {
        // The toolchain is there but the kernel side does not build: a real error.
        eprintln!("memtools: building the eBPF object failed: {e:#}");
        std::process::exit(1);
    }
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

//! The house holds: the core library and the viewer build without the kernel side, so a store
//! copied out of CI opens on a laptop with stable Rust alone.

use std::path::Path;
use std::process::Command;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Every package `cargo tree` reaches from `package` through normal and build dependencies.
fn tree(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--prefix",
            "none",
            "-e",
            "normal,build",
            "-p",
            package,
        ])
        .current_dir(workspace())
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_core_library_and_the_viewers_reach_no_aya_crate_and_no_recorder() {
    for package in ["memtools", "memtools-gui", "memtools-tui"] {
        let deps = tree(package);
        assert!(deps.iter().any(|d| d == package), "{package}: {deps:?}");
        let kernel: Vec<&String> = deps
            .iter()
            .filter(|d| d.starts_with("aya") || *d == "memtools-user" || *d == "memtools-ebpf")
            .collect();
        assert!(kernel.is_empty(), "{package} depends on {kernel:?}");
    }
}

#[test]
fn the_recorder_builds_on_the_core_library() {
    let deps = tree("memtools-user");
    for needed in ["memtools", "aya"] {
        assert!(
            deps.iter().any(|d| d == needed),
            "memtools-user lacks {needed}"
        );
    }
}

#[test]
fn the_core_library_has_no_build_script() {
    assert!(!workspace().join("memtools/build.rs").exists());
    let manifest = std::fs::read_to_string(workspace().join("memtools/Cargo.toml"))
        .expect("memtools/Cargo.toml");
    assert!(!manifest.contains("build ="), "{manifest}");
}

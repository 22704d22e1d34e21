//! `cargo xtask setup`: everything a fresh machine lacks, installed idempotently.

use std::process::Command;

use anyhow::Result;

use crate::sh;

/// Installs the toolchain components and packages the build, the tests and the benchmarks use.
/// Each step checks first, so a second run does nothing.
pub fn setup() -> Result<()> {
    rust_components()?;
    python_psutil()?;
    Ok(())
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

//! The GUI's tasks: what its real-window checks need on a fresh machine, and the screenshot the
//! README shows. (The GUI's own tests run headless through egui_kittest and need neither.)

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::{root, sh};

/// Debian packages for a real window without a display: Xvfb, Mesa's software OpenGL
/// (llvmpipe), ImageMagick's `import` for the screenshot, and xwininfo to find the window.
const PACKAGES: [&str; 4] = ["xvfb", "libgl1-mesa-dri", "imagemagick", "x11-utils"];

/// Installs [`PACKAGES`] with apt-get, only when one is missing (so a second run does nothing).
pub fn setup_gui() -> Result<()> {
    let installed = |pkg: &str| {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
    };
    let missing: Vec<&str> = PACKAGES.into_iter().filter(|p| !installed(p)).collect();
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

/// `cargo xtask screenshot`: the VLT session of revision 377208 in the real window under Xvfb,
/// written to docs/screenshot-vlt-377208.png (scripts/screenshot.sh does the work).
pub fn screenshot() -> Result<()> {
    setup_gui()?;
    let script = root().join("scripts/screenshot.sh");
    sh(Command::new("bash").arg(Path::new(&script)))
}

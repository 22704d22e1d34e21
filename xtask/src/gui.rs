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
    crate::setup::apt_install(&PACKAGES)
}

/// `cargo xtask screenshot [sites]`: the VLT session of revision 377208 in the real window under
/// Xvfb, written to docs/screenshot-vlt-377208.png (scripts/screenshot.sh does the work); with
/// `sites`, the "where it grows" panel on a session recorded with `record --sites` (root), in
/// docs/screenshot-sites.png (scripts/screenshot-sites.sh).
pub fn screenshot(args: &[String]) -> Result<()> {
    let script = match args.first().map(String::as_str) {
        None => "scripts/screenshot.sh",
        Some("sites") => "scripts/screenshot-sites.sh",
        Some(other) => anyhow::bail!("unknown screenshot `{other}` (none, or `sites`)"),
    };
    setup_gui()?;
    sh(Command::new("bash").arg(Path::new(&root().join(script))))
}

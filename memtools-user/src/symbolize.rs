//! Turns the addresses of sampled user stacks into frames a person can read, while the process
//! is alive: blazesym reads its maps (/proc/PID/maps and map_files, so shared libraries and
//! deleted or namespaced files resolve), ELF symbols, DWARF line tables with inlined functions,
//! and perf map files (/tmp/perf-PID.map) for JIT code. Each frame also keeps its module's
//! build-id and file offset, so a session copied elsewhere can be symbolized again.

use std::collections::HashMap;

use blazesym::normalize::{Normalizer, UserMeta};
use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{Input, Sym, Symbolized, Symbolizer as Blaze};
use blazesym::{Addr, Pid};
use memtools::sites::{Frame, Stack};

use crate::record::ebpf::kept_maps::Mapping;

/// Why a process's stacks could not be symbolized (it exited, its maps could not be read).
#[derive(Debug, thiserror::Error)]
#[error("process {pid}: cannot symbolize its stacks: {source}")]
pub struct SymbolizeError {
    pub pid: u32,
    #[source]
    pub source: blazesym::Error,
}

/// Symbolizes stacks of live processes; keeps parsed binaries between calls, so symbolizing
/// the same program's stacks again is cheap.
pub struct Symbolizer {
    normalizer: Normalizer,
    blaze: Blaze,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

/// The address looked up for a stack position. Every frame but the innermost holds a return
/// address, the instruction after the call: one byte back is inside the call, so its line is
/// the call's line, and a call ending a function does not resolve to the next function.
pub fn lookup_address(address: u64, position: usize) -> u64 {
    if position == 0 {
        address
    } else {
        address.saturating_sub(1)
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        Symbolizer {
            normalizer: Normalizer::builder().enable_build_ids(true).build(),
            blaze: Blaze::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
        }
    }

    /// Symbolizes stacks of process `pid` (each innermost address first): every address gives
    /// one frame, or several where code was inlined (inlined functions first). Addresses that
    /// cannot be resolved keep what is known (module and offset, else the bare address).
    pub fn symbolize(&self, pid: u32, stacks: &[Vec<u64>]) -> Result<Vec<Stack>, SymbolizeError> {
        let mut lookups: Vec<Addr> = stacks
            .iter()
            .flat_map(|s| s.iter().enumerate().map(|(i, a)| lookup_address(*a, i)))
            .collect();
        lookups.sort_unstable();
        lookups.dedup();
        let frames = self.resolve(pid, &lookups)?;
        Ok(stacks.iter().map(|s| assemble(s, &frames)).collect())
    }

    /// The frames of each lookup address (see [`lookup_address`]) of process `pid`.
    pub fn resolve(
        &self,
        pid: u32,
        lookups: &[Addr],
    ) -> Result<HashMap<Addr, Vec<Frame>>, SymbolizeError> {
        let err = |source| SymbolizeError { pid, source };
        let normalized = self
            .normalizer
            .normalize_user_addrs(Pid::from(pid), lookups)
            .map_err(err)?;
        let mut process = Process::new(Pid::from(pid));
        // map_files needs CAP_SYS_ADMIN; without it the paths in the maps are used instead.
        process.map_files = nix::unistd::geteuid().is_root();
        process.perf_map = perf_map_is_its_own(pid);
        let symbolized = self
            .blaze
            .symbolize(&Source::Process(process), Input::AbsAddr(lookups))
            .map_err(err)?;
        let mut frames: HashMap<Addr, Vec<Frame>> = HashMap::with_capacity(lookups.len());
        for ((lookup, (offset, meta)), sym) in
            lookups.iter().zip(&normalized.outputs).zip(&symbolized)
        {
            let (module, build_id) = match normalized.meta.get(*meta) {
                Some(UserMeta::Elf(elf)) => (
                    Some(elf.path.to_string_lossy().into_owned()),
                    elf.build_id.as_ref().map(|b| hex(b)),
                ),
                _ => (None, None),
            };
            let base = Frame {
                address: *lookup,
                file_offset: module.as_ref().map(|_| *offset),
                module,
                build_id,
                ..Frame::default()
            };
            let expanded = match sym {
                Symbolized::Sym(sym) => expand(sym, &base),
                _ => vec![base],
            };
            frames.insert(*lookup, expanded);
        }
        Ok(frames)
    }

    /// The frames of `lookups` in a process that is gone, from what was kept of its maps:
    /// each address's file offset looked up in the kept file itself. Addresses in no kept
    /// mapping (anonymous memory, JIT code, a library mapped after the maps were read) are
    /// left out, as unresolved.
    pub fn resolve_kept(&self, maps: &[Mapping], lookups: &[Addr]) -> HashMap<Addr, Vec<Frame>> {
        // Per file (by identity): its mapping for each address, and the offsets to look up.
        let mut by_file: Vec<(&Mapping, Vec<(Addr, u64)>)> = Vec::new();
        for &address in lookups {
            let Some((m, offset)) = maps
                .iter()
                .find_map(|m| m.file_offset(address).map(|o| (m, o)))
            else {
                continue;
            };
            match by_file
                .iter_mut()
                .find(|(f, _)| std::sync::Arc::ptr_eq(&f.file, &m.file))
            {
                Some((_, v)) => v.push((address, offset)),
                None => by_file.push((m, vec![(address, offset)])),
            }
        }
        let mut frames = HashMap::with_capacity(lookups.len());
        for (mapping, wanted) in by_file {
            let offsets: Vec<u64> = wanted.iter().map(|(_, o)| *o).collect();
            let path = mapping.file.path();
            let symbolized = self
                .blaze
                .symbolize(&Source::Elf(Elf::new(&path)), Input::FileOffset(&offsets));
            for (i, (address, offset)) in wanted.iter().enumerate() {
                let base = Frame {
                    address: *address,
                    module: Some(mapping.path.clone()),
                    build_id: mapping.file.build_id.clone(),
                    file_offset: Some(*offset),
                    ..Frame::default()
                };
                let expanded = match symbolized.as_ref().ok().and_then(|s| s.get(i)) {
                    Some(Symbolized::Sym(sym)) => expand(sym, &base),
                    _ => vec![base],
                };
                frames.insert(*address, expanded);
            }
        }
        frames
    }
}

/// A stack's frames from resolved lookup addresses; an address not among them keeps just the
/// address. Every frame carries the sampled address, not the one looked up.
/// Whether the process's JIT perf map (`/tmp/perf-PID.map` as it sees /tmp) is a regular file
/// of the process's own user. /tmp is anyone's: a link planted there would have root read a
/// file it was pointed at, and a FIFO would block the recorder on open, so anything else is
/// left unread (JIT frames then go unnamed). A process in another pid namespace names its map
/// by its pid there, which this does not find: its JIT frames go unnamed too.
fn perf_map_is_its_own(pid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let map = std::fs::symlink_metadata(format!("/proc/{pid}/root/tmp/perf-{pid}.map"));
    let owner = std::fs::metadata(format!("/proc/{pid}"));
    match (map, owner) {
        (Ok(map), Ok(owner)) => map.file_type().is_file() && map.uid() == owner.uid(),
        _ => false,
    }
}

pub fn assemble(stack: &[u64], frames: &HashMap<Addr, Vec<Frame>>) -> Stack {
    stack
        .iter()
        .enumerate()
        .flat_map(|(i, address)| {
            let mut expanded = frames
                .get(&lookup_address(*address, i))
                .cloned()
                .unwrap_or_else(|| vec![Frame::default()]);
            for f in &mut expanded {
                f.address = *address;
            }
            expanded
        })
        .collect()
}

/// One symbol with its inlined calls as frames, innermost first. blazesym gives the outer
/// function with the location of its (inlined) call, then each inlined function with the
/// location inside it, the last one's being the address's own.
pub(crate) fn expand(sym: &Sym<'_>, base: &Frame) -> Vec<Frame> {
    let located = |name: &str, code: Option<&blazesym::symbolize::CodeInfo<'_>>, inlined| {
        let mut f = base.clone();
        f.function = Some(name.to_string());
        if let Some(code) = code {
            f.file = Some(code.to_path().to_string_lossy().into_owned());
            f.line = code.line;
        }
        f.inlined = inlined;
        f
    };
    let mut frames: Vec<Frame> = sym
        .inlined
        .iter()
        .rev()
        .map(|i| located(&i.name, i.code_info.as_ref(), true))
        .collect();
    frames.push(located(&sym.name, sym.code_info.as_deref(), false));
    frames
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_known_function(x: u64) -> u64 {
        std::hint::black_box(x.wrapping_mul(31))
    }

    #[test]
    fn a_live_process_s_own_function_and_a_shared_library_s_resolve_with_build_id_and_offset() {
        let here = a_known_function as *const () as u64;
        let malloc = libc::malloc as *const () as u64;
        let stacks = vec![vec![here + 1, malloc + 1], vec![0x10]];
        let out = Symbolizer::new()
            .symbolize(std::process::id(), &stacks)
            .expect("symbolizing the test's own process");
        // Inlined functions come first (an optimized build inlines wrapping_mul): the function
        // itself is the address's outermost frame.
        let ours = out[0]
            .iter()
            .find(|f| !f.inlined)
            .expect("the address's own function");
        assert!(
            ours.function
                .as_deref()
                .unwrap_or("")
                .contains("a_known_function"),
            "{ours:?}"
        );
        assert!(
            ours.file.as_deref().unwrap_or("").ends_with("symbolize.rs"),
            "the DWARF line table gives the source file: {ours:?}"
        );
        assert!(ours.line.is_some(), "{ours:?}");
        assert_eq!(
            ours.address,
            here + 1,
            "the stored address is the sampled one"
        );
        let exe = std::env::current_exe().unwrap();
        assert_eq!(
            std::fs::canonicalize(ours.module.as_deref().unwrap()).unwrap(),
            std::fs::canonicalize(exe).unwrap()
        );
        assert!(ours.file_offset.is_some_and(|o| o > 0), "{ours:?}");
        let lib = out[0].last().unwrap();
        assert!(
            lib.module.as_deref().unwrap_or("").contains("libc"),
            "a shared library is found through the maps: {lib:?}"
        );
        assert!(
            lib.build_id.as_deref().is_some_and(|b| b.len() >= 16),
            "{lib:?}"
        );
        assert!(
            lib.function.as_deref().unwrap_or("").contains("malloc"),
            "{lib:?}"
        );
        // An address mapped nowhere keeps just the address.
        assert_eq!(out[1].len(), 1);
        assert_eq!(
            (out[1][0].function.as_ref(), out[1][0].module.as_ref()),
            (None, None)
        );
        assert_eq!(out[1][0].label(), "0x10");
    }

    #[test]
    fn a_planted_perf_map_is_not_read() {
        let pid = std::process::id();
        let path = format!("/tmp/perf-{pid}.map");
        let _ = std::fs::remove_file(&path);
        assert!(!perf_map_is_its_own(pid), "no map: nothing to read");
        std::os::unix::fs::symlink("/etc/passwd", &path).expect("a link in /tmp");
        let planted = perf_map_is_its_own(pid);
        std::fs::remove_file(&path).expect("removing the link");
        assert!(!planted, "a link is never followed");
        std::fs::write(&path, "0 10 jitted\n").expect("a perf map");
        let own = perf_map_is_its_own(pid);
        std::fs::remove_file(&path).expect("removing the map");
        assert!(own, "the process's own regular file is read");
    }

    #[test]
    fn a_process_that_is_gone_is_named_in_the_error() {
        // Far above any pid_max: never a live process.
        let err = Symbolizer::new()
            .symbolize(i32::MAX as u32 - 1, &[vec![0x1000]])
            .expect_err("no such process");
        assert!(
            err.to_string()
                .contains(&format!("process {}", i32::MAX - 1)),
            "{err}"
        );
    }
}

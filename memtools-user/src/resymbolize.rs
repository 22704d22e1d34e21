//! `memtools-user resymbolize`: names the frames of a session's growth sites again where the
//! binaries with symbols are. A CI runner records stripped binaries (frames with only a module,
//! its build-id and a file offset); on a developer's machine, the same build's unstripped
//! binaries or debug files (found by build-id) give the functions, files and lines.
//!
//! Where a build-id is looked for, in order: `DIR/.build-id/ab/cdef....debug` (and without
//! `.debug`) in each `--search` directory and /usr/lib/debug (the layout debuggers use);
//! the path the process mapped it from, when that file is still there with the same build-id;
//! then every ELF file under each `--search` directory. Only a file whose build-id matches is
//! ever used: a binary rebuilt since would name the wrong code.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use memtools::sites::{Frame, Stack};
use memtools::store::Store;

use crate::cli::ResymbolizeArgs;
use crate::symbolize::expand;

/// The standard place of separate debug files.
const SYSTEM_DEBUG: &str = "/usr/lib/debug";
/// How deep a `--search` directory is walked, and how many entries at most: a search of `/`
/// ends in bounded time and memory.
const MAX_DEPTH: usize = 8;
const MAX_ENTRIES: usize = 200_000;

pub fn run(args: ResymbolizeArgs) -> Result<i32> {
    for dir in &args.search {
        if !dir.is_dir() {
            bail!("--search {}: not a directory", dir.display());
        }
    }
    // A store that is not there is an error, never created: a mistyped path leaves nothing.
    drop(Store::open_read_only(&args.store.store)?);
    let store = Store::open(&args.store.store)?;
    let id = store.resolve(args.session.session)?;
    let stacks = store.site_stacks(id)?;
    if stacks.is_empty() {
        bail!(
            "session {id} has no growth sites: they are recorded with the eBPF backend, by default for a command or --pid (`memtools-user record --sites` requires them)"
        );
    }
    let wanted = wanted_modules(&stacks);
    if wanted.is_empty() {
        bail!("session {id}: no frame has a module build-id and offset to look up");
    }
    let mut dirs = args.search.clone();
    dirs.push(PathBuf::from(SYSTEM_DEBUG));
    let found = find_binaries(&wanted, &dirs, &args.search);
    let named = symbolize_all(&stacks, &found)?;
    let mut changed = Vec::new();
    let (mut before, mut after, mut total) = (0usize, 0usize, 0usize);
    for (stack_id, stack) in &stacks {
        let new = rebuild(stack, &named);
        before += addresses(stack)
            .filter(|g| outer(g).function.is_some())
            .count();
        after += addresses(&new)
            .filter(|g| outer(g).function.is_some())
            .count();
        total += addresses(stack).count();
        if &new != stack {
            changed.push((*stack_id, new));
        }
    }
    store
        .replace_site_frames(&changed)
        .with_context(|| format!("writing the new frames into {}", args.store.store.display()))?;
    println!(
        "session {id}: {after} of {total} frames named (were {before}); {} of {} binaries found",
        found.len(),
        wanted.len()
    );
    for (build_id, path) in &found {
        println!("  found    {build_id}  {}", path.display());
    }
    for (build_id, module) in wanted.iter().filter(|(b, _)| !found.contains_key(*b)) {
        println!("  missing  {build_id}  {module}");
    }
    Ok(if found.is_empty() { 1 } else { 0 })
}

/// A stack's frames grouped by sampled address: the inlined frames of an address, then its
/// own (the one not inlined).
fn addresses(stack: &[Frame]) -> impl Iterator<Item = &[Frame]> {
    stack.split_inclusive(|f| !f.inlined)
}

/// The frame of an address that was not inlined (its last; `split_inclusive` never yields an
/// empty group).
fn outer(group: &[Frame]) -> &Frame {
    &group[group.len() - 1]
}

/// Each build-id the session's frames need, with a module path it was mapped from.
fn wanted_modules(stacks: &[(i64, Stack)]) -> BTreeMap<String, String> {
    let mut wanted = BTreeMap::new();
    for (_, stack) in stacks {
        for f in stack {
            if let (Some(build_id), Some(_)) = (&f.build_id, f.file_offset) {
                wanted
                    .entry(build_id.clone())
                    .or_insert_with(|| f.module.clone().unwrap_or_default());
            }
        }
    }
    wanted
}

/// A binary for each build-id that can be found (see the module's comment for where).
fn find_binaries(
    wanted: &BTreeMap<String, String>,
    debug_dirs: &[PathBuf],
    search: &[PathBuf],
) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    for (build_id, module) in wanted {
        let by_layout = debug_dirs.iter().find_map(|dir| {
            let (head, rest) = build_id.split_at(2.min(build_id.len()));
            let base = dir.join(".build-id").join(head);
            [base.join(format!("{rest}.debug")), base.join(rest)]
                .into_iter()
                .find(|p| has_build_id(p, build_id))
        });
        let recorded = Some(PathBuf::from(module)).filter(|p| has_build_id(p, build_id));
        if let Some(path) = by_layout.or(recorded) {
            found.insert(build_id.clone(), path);
        }
    }
    if found.len() < wanted.len() {
        let mut entries = 0;
        for dir in search {
            walk(dir, 0, &mut entries, &mut |path| {
                if let Some(b) = build_id_of(path)
                    && wanted.contains_key(&b)
                    && !found.contains_key(&b)
                {
                    found.insert(b, path.to_path_buf());
                }
                found.len() < wanted.len()
            });
        }
    }
    found
}

/// Visits the regular files under `dir` (links are not followed) until `visit` says stop.
fn walk(
    dir: &Path,
    depth: usize,
    entries: &mut usize,
    visit: &mut dyn FnMut(&Path) -> bool,
) -> bool {
    let Ok(list) = std::fs::read_dir(dir) else {
        return true;
    };
    for entry in list.flatten() {
        *entries += 1;
        if *entries > MAX_ENTRIES {
            return false;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        let go_on = if kind.is_dir() && depth < MAX_DEPTH {
            walk(&path, depth + 1, entries, visit)
        } else if kind.is_file() {
            visit(&path)
        } else {
            true
        };
        if !go_on {
            return false;
        }
    }
    true
}

/// A regular file's GNU build-id, hex (nothing for anything else: a FIFO is never opened).
fn build_id_of(path: &Path) -> Option<String> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    // Non-blocking: a file swapped for a FIFO after the look above still cannot block.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut file, &mut magic).ok()?;
    if &magic != b"\x7fELF" {
        return None;
    }
    let id = blazesym::helper::read_elf_build_id(&path).ok()??;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

fn has_build_id(path: &Path, build_id: &str) -> bool {
    build_id_of(path).is_some_and(|b| b == build_id)
}

/// The frames of each (build-id, file offset) the found binaries name.
fn symbolize_all(
    stacks: &[(i64, Stack)],
    found: &BTreeMap<String, PathBuf>,
) -> Result<HashMap<(String, u64), Vec<Frame>>> {
    let blaze = Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .build();
    let mut named = HashMap::new();
    for (build_id, path) in found {
        let mut offsets: Vec<u64> = stacks
            .iter()
            .flat_map(|(_, s)| s)
            .filter(|f| f.build_id.as_ref() == Some(build_id))
            .filter_map(|f| f.file_offset)
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        let symbolized = blaze
            .symbolize(&Source::Elf(Elf::new(path)), Input::FileOffset(&offsets))
            .with_context(|| format!("symbolizing with {}", path.display()))?;
        for (offset, sym) in offsets.iter().zip(&symbolized) {
            if let Symbolized::Sym(sym) = sym {
                let base = Frame {
                    build_id: Some(build_id.clone()),
                    file_offset: Some(*offset),
                    ..Frame::default()
                };
                named.insert((build_id.clone(), *offset), expand(sym, &base));
            }
        }
    }
    Ok(named)
}

/// A stack with each address whose module and offset were named replaced by the new frames
/// (keeping its sampled address and the module path it was mapped from); others as they were.
fn rebuild(stack: &[Frame], named: &HashMap<(String, u64), Vec<Frame>>) -> Stack {
    addresses(stack)
        .flat_map(|group| {
            let own = outer(group);
            let key = own.build_id.clone().zip(own.file_offset);
            match key.and_then(|k| named.get(&k)) {
                Some(frames) => frames
                    .iter()
                    .map(|f| Frame {
                        address: own.address,
                        module: own.module.clone(),
                        ..f.clone()
                    })
                    .collect(),
                None => group.to_vec(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(address: u64, function: Option<&str>, inlined: bool) -> Frame {
        Frame {
            address,
            module: Some("/ci/prog".into()),
            build_id: Some("ab12".into()),
            file_offset: Some(address - 0x1000),
            function: function.map(str::to_string),
            inlined,
            ..Frame::default()
        }
    }

    #[test]
    fn each_address_named_again_keeps_its_sampled_address_and_module_and_the_rest_stays() {
        let stack = vec![
            frame(0x1100, Some("old_inner"), true),
            frame(0x1100, None, false),
            frame(0x1200, Some("main"), false),
        ];
        let mut named = HashMap::new();
        named.insert(
            ("ab12".to_string(), 0x100),
            vec![Frame {
                function: Some("grow_cache".into()),
                line: Some(41),
                build_id: Some("ab12".into()),
                file_offset: Some(0x100),
                ..Frame::default()
            }],
        );
        let new = rebuild(&stack, &named);
        assert_eq!(new.len(), 2, "{new:?}");
        assert_eq!(new[0].function.as_deref(), Some("grow_cache"));
        assert_eq!(
            (new[0].address, new[0].module.as_deref()),
            (0x1100, Some("/ci/prog"))
        );
        assert_eq!(new[0].line, Some(41));
        assert_eq!(new[1], stack[2], "an address not named again is kept whole");
        assert_eq!(addresses(&stack).count(), 2);
    }

    #[test]
    fn a_fifo_or_a_text_file_has_no_build_id() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(build_id_of(&fifo), None, "never opened: it would block");
        let text = dir.path().join("t");
        std::fs::write(&text, "not an ELF file").unwrap();
        assert_eq!(build_id_of(&text), None);
    }
}

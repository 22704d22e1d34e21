//! What a user reads of growth sites: the top sites of a process (function, file:line, bytes,
//! share of its growth), folded stacks for other tools, JSON, and an inferno flame graph.
//!
//! Resident growth (sampled page faults) and reserved address space (brk/mmap calls) are
//! listed apart, each with shares of its own total: they measure different things and are
//! never added up.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Frame, Measure, Site, SiteCause};

/// One line of the top sites: where a process grew, and how much of its growth that was.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SiteSummary {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// What sampled it: `fault` (bytes: resident memory), `brk` or `mmap` (bytes: address
    /// space the calls reserved).
    pub cause: SiteCause,
    pub bytes: u64,
    /// Samples: sampled faults, or sampled calls (each large call, and small ones by their
    /// bytes: see the recorder's kernel side).
    pub samples: u64,
    /// Share of the bytes of the sites summarized together (one measure) in the window, 0..=1.
    pub share: f64,
}

/// What a user is told when stacks came back one frame deep: the top "site" would be whatever
/// touched the memory (memset, the allocator), not the code that made it grow.
pub const SHALLOW_STACKS: &str = "stacks came back one frame deep: the program was built without frame pointers, so the code that made it grow cannot be named; rebuild with frame pointers (C/C++: -fno-omit-frame-pointer; Rust: RUSTFLAGS=\"-C force-frame-pointers=yes\"; distributions such as Ubuntu 24.04 and Fedora 38+ build their packages with them)";

/// Whether most samples have a stack of one frame (counting an address's inlined frames as
/// one): then no site is named, and [`SHALLOW_STACKS`] says why.
pub fn shallow(sites: &[Site]) -> bool {
    let depth = |s: &Site| s.stack.iter().filter(|f| !f.inlined).count();
    let total: u64 = sites.iter().map(|s| s.samples).sum();
    let one_deep: u64 = sites
        .iter()
        .filter(|s| depth(s) <= 1)
        .map(|s| s.samples)
        .sum();
    total > 0 && one_deep * 2 > total
}

/// Whether a frame is the C library, the allocator or a language runtime (memset, malloc,
/// `alloc::`, `core::`...): where memory is touched, not the code that asked for it.
pub fn is_runtime(frame: &Frame) -> bool {
    const MODULES: &[&str] = &[
        "libc.so",
        "libc-",
        "ld-linux",
        "libstdc++",
        "libgcc_s",
        "libjemalloc",
        "libtcmalloc",
        "libmimalloc",
    ];
    const FUNCTIONS: &[&str] = &[
        "alloc::",
        "core::",
        "std::",
        "<alloc::",
        "<core::",
        "<std::",
        "__rust_",
        "hashbrown::",
        "<hashbrown::",
    ];
    // Where the Rust standard library and C++ headers are built from: generic code of theirs
    // (`<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem`) is compiled into the
    // program, under names that do not start with its crate.
    const FILES: &[&str] = &["/rustc/", "/usr/include/c++/"];
    let module = frame.module.as_deref().map(base).unwrap_or("");
    let function = frame.function.as_deref().unwrap_or("");
    let file = frame.file.as_deref().unwrap_or("");
    MODULES.iter().any(|m| module.starts_with(m))
        || FUNCTIONS.iter().any(|f| function.starts_with(f))
        || FILES.iter().any(|f| file.starts_with(f))
}

/// The frame a site is named after: the innermost frame of the program's own code with a
/// source location (not the C library, allocator or runtime beneath it, see [`is_runtime`]),
/// else the innermost of its own with a name, else the innermost.
pub fn named_frame(site: &Site) -> Option<&Frame> {
    let own = |f: &&Frame| !is_runtime(f);
    site.stack
        .iter()
        .filter(own)
        .find(|f| f.file.is_some() && f.function.is_some())
        .or_else(|| site.stack.iter().filter(own).find(|f| f.function.is_some()))
        .or_else(|| site.stack.first())
}

/// The top sites, largest first: sites of one cause named after the same frame (function and
/// line) are summed; each share is of all the sites given, so give sites of one [`Measure`]
/// (see [`of_measure`]). Empty when the stacks are [`shallow`].
pub fn summarize(sites: &[Site]) -> Vec<SiteSummary> {
    if shallow(sites) {
        return Vec::new();
    }
    let total: u64 = sites.iter().map(|s| s.bytes).sum();
    // (function, file, line, cause) -> (bytes, samples)
    type Named = (String, Option<String>, Option<u32>, SiteCause);
    let mut by_frame: BTreeMap<Named, (u64, u64)> = BTreeMap::new();
    for site in sites {
        let Some(frame) = named_frame(site) else {
            continue;
        };
        let entry = by_frame
            .entry((frame.label(), frame.file.clone(), frame.line, site.cause))
            .or_default();
        entry.0 += site.bytes;
        entry.1 += site.samples;
    }
    let mut out: Vec<SiteSummary> = by_frame
        .into_iter()
        .map(
            |((function, file, line, cause), (bytes, samples))| SiteSummary {
                function,
                file,
                line,
                cause,
                bytes,
                samples,
                share: if total == 0 {
                    0.0
                } else {
                    bytes as f64 / total as f64
                },
            },
        )
        .collect();
    out.sort_by(|a, b| {
        b.bytes
            .cmp(&a.bytes)
            .then(b.samples.cmp(&a.samples))
            .then(a.function.cmp(&b.function))
    });
    out
}

impl SiteSummary {
    /// "grow_cache (cache.c:41), 92 %": how a verdict names a site.
    pub fn phrase(&self) -> String {
        let place = match (&self.file, self.line) {
            (Some(f), Some(l)) => format!(" ({}:{l})", base(f)),
            (Some(f), None) => format!(" ({})", base(f)),
            _ => String::new(),
        };
        format!("{}{place}, {:.0} %", self.function, self.share * 100.0)
    }
}

fn base(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Folded stacks (outermost frame first, `;`-separated, then the bytes), one line per distinct
/// stack, sorted: what inferno, speedscope and flamegraph.pl read.
pub fn folded(sites: &[Site]) -> String {
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for site in sites {
        let stack: Vec<String> = site
            .stack
            .iter()
            .rev()
            .map(|f| {
                // `;` separates frames and a trailing number is the weight: neither may appear
                // inside a frame's name.
                f.label().replace(';', ":").replace(' ', "_")
            })
            .collect();
        if stack.is_empty() {
            continue;
        }
        *lines.entry(stack.join(";")).or_default() += site.bytes;
    }
    let mut out = String::new();
    for (stack, bytes) in lines {
        let _ = writeln!(out, "{stack} {bytes}");
    }
    out
}

/// A flame graph of the sites as an SVG document, widths in bytes grown.
pub fn flame_graph(title: &str, sites: &[Site]) -> std::io::Result<Vec<u8>> {
    let folded = folded(sites);
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = "bytes".to_string();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg)
        .map_err(std::io::Error::other)?;
    Ok(svg)
}

/// The sites whose bytes are of one measure.
pub fn of_measure(sites: &[Site], measure: Measure) -> Vec<Site> {
    sites
        .iter()
        .filter(|s| s.cause.measure() == measure)
        .cloned()
        .collect()
}

impl Measure {
    /// What a table of this measure's sites is, and what its shares are of.
    pub fn heading(self) -> &'static str {
        match self {
            Measure::Resident => {
                "resident memory, from sampled page faults (share: of the sampled faults' bytes)"
            }
            Measure::Reserved => {
                "address space reserved by brk/mmap calls, sampled by their bytes (share: of the bytes those calls reserved; reserved is not resident)"
            }
        }
    }

    /// A frame naming the measure, outermost in folded stacks and flame graphs that show both.
    pub fn frame_label(self) -> &'static str {
        match self {
            Measure::Resident => "[resident: page faults]",
            Measure::Reserved => "[reserved: brk/mmap calls]",
        }
    }
}

/// One process in `sites --format json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProcessSites {
    pub pid: u32,
    pub name: String,
    /// Where resident memory grew (sampled page faults), shares of their bytes.
    pub sites: Vec<SiteSummary>,
    /// Why `sites` is empty when stacks were sampled but name nothing ([`SHALLOW_STACKS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Where brk/mmap calls reserved address space, shares of the bytes they reserved; only
    /// when calls were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<Vec<SiteSummary>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_problem: Option<String>,
}

impl ProcessSites {
    /// A process's entry: its top `limit` sites of each measure shown, or why none can be
    /// named.
    pub fn of(
        pid: u32,
        name: &str,
        sites: &[Site],
        shown: &[Measure],
        limit: usize,
    ) -> ProcessSites {
        let of = |m: Measure| {
            let these = of_measure(sites, m);
            let top: Vec<SiteSummary> = summarize(&these).into_iter().take(limit).collect();
            (top, shallow(&these).then(|| SHALLOW_STACKS.to_string()))
        };
        let (sites, problem) = of(Measure::Resident);
        let (calls, calls_problem) = if shown.contains(&Measure::Reserved) {
            let (c, p) = of(Measure::Reserved);
            (Some(c), p)
        } else {
            (None, None)
        };
        ProcessSites {
            pid,
            name: name.to_string(),
            sites,
            problem,
            calls,
            calls_problem,
        }
    }
}

/// The top sites as text: a table per measure shown, each under a heading that says what its
/// shares are of, or the reason there are none.
pub fn text(pid: u32, name: &str, sites: &[Site], shown: &[Measure], limit: usize) -> String {
    let mut out = format!("{name} (pid {pid})\n");
    for &measure in shown {
        let these = of_measure(sites, measure);
        let _ = writeln!(out, "  {}:", measure.heading());
        if these.is_empty() {
            out.push_str("    none sampled in this window\n");
            continue;
        }
        if shallow(&these) {
            let _ = writeln!(out, "    {SHALLOW_STACKS}");
            continue;
        }
        for s in summarize(&these).iter().take(limit) {
            let place = match (&s.file, s.line) {
                (Some(f), Some(l)) => format!("{}:{l}", base(f)),
                (Some(f), None) => base(f).to_string(),
                _ => "?".to_string(),
            };
            let what = match s.cause {
                SiteCause::Fault => "samples".to_string(),
                c => format!("{:<4} calls", c.name()),
            };
            let _ = writeln!(
                out,
                "    {:>5.1} %  {:>12}  {:>7} {what}  {}  {place}",
                s.share * 100.0,
                crate::units::bytes(s.bytes),
                s.samples,
                s.function
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>, file: Option<&str>, line: u32) -> Frame {
        Frame {
            address: 0x1000 + u64::from(line),
            function: function.map(String::from),
            file: file.map(String::from),
            line: file.map(|_| line),
            ..Frame::default()
        }
    }

    fn site(stack: Vec<Frame>, samples: u64, bytes: u64) -> Site {
        Site {
            stack,
            cause: SiteCause::Fault,
            samples,
            bytes,
        }
    }

    /// A leak through malloc (libc, here with debug information, on top), and a churn.
    fn sample_sites() -> Vec<Site> {
        let mut malloc = frame(Some("_int_malloc"), Some("./malloc/malloc.c"), 4378);
        malloc.module = Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into());
        vec![
            site(
                vec![
                    malloc.clone(),
                    frame(Some("grow_cache"), Some("/src/cache.c"), 41),
                    frame(Some("main"), Some("/src/main.c"), 9),
                ],
                90,
                92 << 20,
            ),
            site(
                vec![
                    malloc,
                    frame(Some("churn"), Some("/src/churn.c"), 12),
                    frame(Some("main"), Some("/src/main.c"), 10),
                ],
                10,
                8 << 20,
            ),
        ]
    }

    #[test]
    fn a_site_is_named_after_the_program_s_own_code_with_its_share() {
        let top = summarize(&sample_sites());
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].function, "grow_cache");
        assert_eq!(
            (top[0].file.as_deref(), top[0].line),
            (Some("/src/cache.c"), Some(41))
        );
        assert!((top[0].share - 0.92).abs() < 1e-9);
        assert_eq!(top[0].phrase(), "grow_cache (cache.c:41), 92 %");
        assert_eq!(top[1].function, "churn");
        let listing = text(7, "leaky", &sample_sites(), &[Measure::Resident], 3);
        assert!(listing.contains("grow_cache  cache.c:41"), "{listing}");
    }

    #[test]
    fn call_sites_are_listed_apart_from_faults_with_shares_of_their_own() {
        let mut sites = sample_sites();
        let mut call = sites[1].clone();
        call.cause = SiteCause::Mmap;
        call.samples = 3;
        call.bytes = 300 << 20;
        sites.push(call);
        // Faults alone: the call's bytes do not dilute the faults' shares.
        let resident = summarize(&of_measure(&sites, Measure::Resident));
        assert_eq!(resident[0].function, "grow_cache");
        assert!((resident[0].share - 0.92).abs() < 1e-9);
        let reserved = summarize(&of_measure(&sites, Measure::Reserved));
        assert_eq!(reserved.len(), 1);
        assert_eq!(
            (reserved[0].function.as_str(), reserved[0].cause),
            ("churn", SiteCause::Mmap)
        );
        assert!((reserved[0].share - 1.0).abs() < 1e-9);
        let both = [Measure::Resident, Measure::Reserved];
        let listing = text(7, "leaky", &sites, &both, 3);
        let (faults, calls) = listing
            .split_once("address space reserved")
            .expect("a table of the calls");
        assert!(faults.contains("resident memory"), "{listing}");
        assert!(faults.contains(" 92.0 %"), "{listing}");
        assert!(
            calls.contains("100.0 %") && calls.contains("mmap calls  churn"),
            "{listing}"
        );
        let json = ProcessSites::of(7, "leaky", &sites, &both, 3);
        assert_eq!(json.sites.len(), 2);
        assert_eq!(json.calls.as_ref().map(Vec::len), Some(1));
        // Faults only: no calls in the JSON at all.
        let json = ProcessSites::of(7, "leaky", &sites, &[Measure::Resident], 3);
        assert_eq!(json.calls, None);
    }

    #[test]
    fn one_frame_deep_stacks_name_no_site_and_say_how_to_fix_it() {
        let flat = vec![
            site(vec![frame(Some("memset"), None, 0)], 80, 80),
            site(sample_sites()[0].stack.clone(), 20, 20),
        ];
        assert!(shallow(&flat));
        assert!(summarize(&flat).is_empty());
        let listing = text(7, "leaky", &flat, &[Measure::Resident], 3);
        assert!(listing.contains("frame pointers"), "{listing}");
        assert!(!listing.contains("memset"), "{listing}");
        assert!(!shallow(&sample_sites()));
    }

    #[test]
    fn folded_stacks_go_outermost_first_and_weigh_bytes() {
        let folded = folded(&sample_sites());
        assert_eq!(
            folded,
            format!(
                "main;churn;_int_malloc {}\nmain;grow_cache;_int_malloc {}\n",
                8 << 20,
                92 << 20
            )
        );
        let svg =
            String::from_utf8(flame_graph("leaky (pid 7)", &sample_sites()).unwrap()).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("grow_cache") && svg.contains("leaky (pid 7)"));
    }
}

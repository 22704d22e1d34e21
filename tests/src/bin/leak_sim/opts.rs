//! Command-line options, parsed by hand: the simulator should depend on nothing beyond anyhow,
//! humantime and libc, and every bad value must name its option so a failing test says why.

use anyhow::{Context, Result, bail};
use std::{ffi::OsString, path::PathBuf, time::Duration};

pub const USAGE: &str = "\
leak-sim: allocate and touch memory in the shapes leaks take, for memtools' end-to-end tests.
Memory is mmap'd and every page touched, and released with munmap, so resident memory moves
by exactly the amounts asked. Threads and file descriptors leak the same way.

Usage: leak-sim SHAPE [OPTIONS]

Shapes:
  linear     every --every, map and touch --step more, for --duration
  steps      a staircase: add --step once every --hold-ticks ticks, flat in between
  sawtooth   grow by --step per tick to --peak above the floor, free back to the floor, repeat;
             the floor rises by --floor-growth each cycle (a leak under GC noise)
  spike      hold --base; once, at --at, add --step for --spike-len, then release it
  flat       map and touch --base once, then hold it for --duration
  tree       spawn --children processes running --child-shape, --depth levels deep; stay
             flat, wait for them all, fail if any failed
  churn      every --every, spawn a child that holds --step for --child-life; for --duration
  reuse      (root) run child A, then give child B A's pid via ns_last_pid; prints
             `reuse pid=PID ok`, exits 2 if it cannot
  serve      a service a test suite talks to: hold --base (then say `ok`), read commands on stdin,
             one a line, and answer `ok` on stdout once done: `keep SIZE` (map, touch and keep
             it: a leak when every test does it), `use SIZE` (map, touch and release it),
             `thread` (start a thread that never exits), `use-thread` (start one and join it),
             `fd` (open a descriptor and keep it), `use-fd` (open one and close it), `wait DUR`
             (answer after DUR: a test's length); ends at end of input or after --duration
  threads    every --every, start --count threads that never exit (small stacks: threads, not
             memory, leak); with --pool N, a fixed pool: threads start until N run, then each
             tick one is joined and another started
  fds        every --every, open --count descriptors (/dev/null) never closed; with --pool N,
             N stay open: each tick opens one and closes the oldest

Options:
  --kind anon|file|shmem  memory that counts as RssAnon, RssFile (a temp file in $TMPDIR, or
                          /tmp or /var/tmp if not tmpfs; written, mapped, read, unlinked at
                          once) or RssShmem (memfd) [anon]
  --step SIZE             growth per tick; churn: each child's memory; spike: its height [2MiB]
  --base SIZE             memory held by spike, flat and reuse's children [8MiB]
  --peak SIZE             sawtooth: height above the floor [32MiB]
  --floor-growth SIZE     sawtooth: floor rise per cycle [0]
  --every DUR             tick period [100ms]
  --duration DUR          how long the shape runs [10s]
  --hold-ticks N          steps: ticks per stair [5]
  --count N               threads, fds: started or opened per tick [1]
  --pool N                threads, fds: the steady counterpart, N at a time (0: a leak) [0]
  --at DUR                spike: when it starts [1s]
  --spike-len DUR         spike: how long it lasts [30ms]
  --children N            tree: children per process [3]
  --depth D               tree: levels of children below this process [1]
  --child-shape SHAPE     tree: what the leaves run, with the same options [linear]
  --child-life DUR        churn, reuse: life of each child [churn 200ms, reuse 500ms]
  --hold DUR              after the shape, keep the memory this long before exiting [0s]
  --exit-code N           exit status on success [0]
  --pid-file PATH         write this process's pid here at start
  --ready-file PATH       create once the first tick's memory is touched (tree: once every
                          leaf's is; churn: the first child's; reuse: child A's)
  -h, --help              print this help

SIZE: bytes, or a number with a unit: 4096, 512KiB, 2MiB, 1.5GiB (K, M, G, T are the same
binary units; KB, MB, GB, TB are powers of 1000). DUR: 100ms, 2s, 1m 30s.

Exit status: --exit-code on success, 1 on errors, 2 when reuse fails. A watchdog (SIGALRM)
ends the process at --duration + --hold + 5s at the latest, so failed tests leave no strays.
Children die with their parent (PR_SET_PDEATHSIG). Nothing is printed on stdout but the
reuse line and serve's answers.
";

/// What the simulator does over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Linear,
    Steps,
    Sawtooth,
    Spike,
    Flat,
    Tree,
    Churn,
    Reuse,
    Serve,
    Threads,
    Fds,
}

impl Shape {
    const ALL: [Shape; 11] = [
        Shape::Linear,
        Shape::Steps,
        Shape::Sawtooth,
        Shape::Spike,
        Shape::Flat,
        Shape::Tree,
        Shape::Churn,
        Shape::Reuse,
        Shape::Serve,
        Shape::Threads,
        Shape::Fds,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Linear => "linear",
            Shape::Steps => "steps",
            Shape::Sawtooth => "sawtooth",
            Shape::Spike => "spike",
            Shape::Flat => "flat",
            Shape::Tree => "tree",
            Shape::Churn => "churn",
            Shape::Reuse => "reuse",
            Shape::Serve => "serve",
            Shape::Threads => "threads",
            Shape::Fds => "fds",
        }
    }

    fn parse(s: &str) -> Result<Shape> {
        match Shape::ALL.into_iter().find(|shape| shape.name() == s) {
            Some(shape) => Ok(shape),
            None => {
                let names: Vec<_> = Shape::ALL.iter().map(|s| s.name()).collect();
                bail!("unknown shape {s:?} (one of: {})", names.join(", "))
            }
        }
    }
}

/// Which resident-memory counter the simulator's pages land in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Anon,
    File,
    Shmem,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Anon => "anon",
            Kind::File => "file",
            Kind::Shmem => "shmem",
        }
    }

    fn parse(s: &str) -> Result<Kind> {
        match s {
            "anon" => Ok(Kind::Anon),
            "file" => Ok(Kind::File),
            "shmem" => Ok(Kind::Shmem),
            _ => bail!("unknown kind {s:?} (one of: anon, file, shmem)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Opts {
    pub shape: Shape,
    pub kind: Kind,
    pub step: u64,
    pub base: u64,
    pub peak: u64,
    pub floor_growth: u64,
    pub every: Duration,
    pub duration: Duration,
    pub hold_ticks: u32,
    pub count: u32,
    pub pool: u32,
    pub at: Duration,
    pub spike_len: Duration,
    pub children: u32,
    pub depth: u32,
    pub child_shape: Shape,
    /// None: the shape's own default (see [`Opts::child_life`]).
    pub child_life: Option<Duration>,
    pub hold: Duration,
    pub exit_code: u8,
    pub pid_file: Option<PathBuf>,
    pub ready_file: Option<PathBuf>,
}

impl Opts {
    fn defaults(shape: Shape) -> Opts {
        const MIB: u64 = 1 << 20;
        Opts {
            shape,
            kind: Kind::Anon,
            step: 2 * MIB,
            base: 8 * MIB,
            peak: 32 * MIB,
            floor_growth: 0,
            every: Duration::from_millis(100),
            duration: Duration::from_secs(10),
            hold_ticks: 5,
            count: 1,
            pool: 0,
            at: Duration::from_secs(1),
            spike_len: Duration::from_millis(30),
            children: 3,
            depth: 1,
            child_shape: Shape::Linear,
            child_life: None,
            hold: Duration::ZERO,
            exit_code: 0,
            pid_file: None,
            ready_file: None,
        }
    }

    /// Life of each churn or reuse child: reuse's children live longer so a recorder sees them.
    pub fn child_life(&self) -> Duration {
        self.child_life.unwrap_or(match self.shape {
            Shape::Reuse => Duration::from_millis(500),
            _ => Duration::from_millis(200),
        })
    }

    /// Arguments that make a child run `self` (minus what belongs to this process alone: pid
    /// file, ready file, exit code). Only options that differ from the defaults go out, in exact
    /// but readable units, so children's command lines stay legible in a recording.
    pub fn to_args(&self) -> Vec<String> {
        let d = Opts::defaults(self.shape);
        let mut args = vec![self.shape.name().to_string()];
        let mut add = |name: &str, value: String, default: String| {
            if value != default {
                args.extend([format!("--{name}"), value]);
            }
        };
        add("kind", self.kind.name().into(), d.kind.name().into());
        add("step", size_arg(self.step), size_arg(d.step));
        add("base", size_arg(self.base), size_arg(d.base));
        add("peak", size_arg(self.peak), size_arg(d.peak));
        let floor = size_arg(self.floor_growth);
        add("floor-growth", floor, size_arg(d.floor_growth));
        add("every", dur_arg(self.every), dur_arg(d.every));
        add("duration", dur_arg(self.duration), dur_arg(d.duration));
        add(
            "hold-ticks",
            self.hold_ticks.to_string(),
            d.hold_ticks.to_string(),
        );
        add("count", self.count.to_string(), d.count.to_string());
        add("pool", self.pool.to_string(), d.pool.to_string());
        add("at", dur_arg(self.at), dur_arg(d.at));
        add("spike-len", dur_arg(self.spike_len), dur_arg(d.spike_len));
        add(
            "children",
            self.children.to_string(),
            d.children.to_string(),
        );
        add("depth", self.depth.to_string(), d.depth.to_string());
        let child_shape = self.child_shape.name().into();
        add("child-shape", child_shape, d.child_shape.name().into());
        if let Some(life) = self.child_life {
            add("child-life", dur_arg(life), String::new());
        }
        add("hold", dur_arg(self.hold), dur_arg(d.hold));
        args
    }

    /// Rejects combinations that would make a shape meaningless rather than run it oddly.
    fn validate(&self) -> Result<()> {
        let ticks = matches!(
            self.shape,
            Shape::Linear
                | Shape::Steps
                | Shape::Sawtooth
                | Shape::Churn
                | Shape::Threads
                | Shape::Fds
        );
        if ticks && self.every.is_zero() {
            bail!("--every must be more than 0 for {}", self.shape.name());
        }
        if self.hold_ticks == 0 {
            bail!("--hold-ticks must be at least 1");
        }
        if self.count == 0 {
            bail!("--count must be at least 1");
        }
        if self.pool > 0 && !matches!(self.shape, Shape::Threads | Shape::Fds) {
            bail!("--pool is for threads and fds");
        }
        if self.shape == Shape::Sawtooth && self.peak == 0 {
            bail!("--peak must be more than 0 for sawtooth");
        }
        if self.shape == Shape::Spike && self.at + self.spike_len > self.duration {
            bail!(
                "spike: --at {} plus --spike-len {} must fit in --duration {}",
                humantime::format_duration(self.at),
                humantime::format_duration(self.spike_len),
                humantime::format_duration(self.duration)
            );
        }
        if self.children == 0 {
            bail!("--children must be at least 1");
        }
        if self.depth == 0 {
            bail!("--depth must be at least 1");
        }
        if self.child_shape == Shape::Tree {
            bail!("--child-shape cannot be tree (use --depth to nest)");
        }
        if self.shape == Shape::Tree {
            // Fail here, once, rather than in every leaf.
            let leaf = Opts {
                shape: self.child_shape,
                ..self.clone()
            };
            leaf.validate().context("--child-shape")?;
        }
        Ok(())
    }
}

pub enum Command {
    Help,
    Run(Opts),
}

/// Options that take a value; checked before a value is consumed so `--bogus 3` blames
/// `--bogus`, not `3`.
const VALUE_OPTIONS: &[&str] = &[
    "kind",
    "step",
    "base",
    "peak",
    "floor-growth",
    "every",
    "duration",
    "hold-ticks",
    "count",
    "pool",
    "at",
    "spike-len",
    "children",
    "depth",
    "child-shape",
    "child-life",
    "hold",
    "exit-code",
    "pid-file",
    "ready-file",
];

/// Parses the arguments after the program name. `--opt VALUE` and `--opt=VALUE` both work;
/// the last of repeated options wins.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    let mut args = args.into_iter();
    let mut shape = None;
    let mut o = Opts::defaults(Shape::Linear);
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| anyhow::anyhow!("argument {a:?} is not UTF-8"))?;
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let Some(opt) = arg.strip_prefix("--") else {
            if arg.starts_with('-') {
                bail!("unknown option {arg}");
            }
            if let Some(shape) = shape {
                bail!(
                    "unexpected argument {arg:?} (the shape is already {})",
                    Shape::name(shape)
                );
            }
            shape = Some(Shape::parse(&arg)?);
            continue;
        };
        let (name, inline) = match opt.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (opt, None),
        };
        if !VALUE_OPTIONS.contains(&name) {
            bail!("unknown option --{name}");
        }
        let value = match inline {
            Some(value) => value,
            None => match args.next() {
                Some(value) => value
                    .into_string()
                    .map_err(|v| anyhow::anyhow!("value {v:?} for --{name} is not UTF-8"))?,
                None => bail!("option --{name} needs a value"),
            },
        };
        set(&mut o, name, &value)
            .with_context(|| format!("invalid value {value:?} for --{name}"))?;
    }
    o.shape = shape.context("missing SHAPE (see leak-sim --help)")?;
    o.validate()?;
    Ok(Command::Run(o))
}

fn set(o: &mut Opts, name: &str, value: &str) -> Result<()> {
    let dur = |v: &str| humantime::parse_duration(v).map_err(anyhow::Error::from);
    match name {
        "kind" => o.kind = Kind::parse(value)?,
        "step" => o.step = parse_size(value)?,
        "base" => o.base = parse_size(value)?,
        "peak" => o.peak = parse_size(value)?,
        "floor-growth" => o.floor_growth = parse_size(value)?,
        "every" => o.every = dur(value)?,
        "duration" => o.duration = dur(value)?,
        "hold-ticks" => o.hold_ticks = value.parse()?,
        "count" => o.count = value.parse()?,
        "pool" => o.pool = value.parse()?,
        "at" => o.at = dur(value)?,
        "spike-len" => o.spike_len = dur(value)?,
        "children" => o.children = value.parse()?,
        "depth" => o.depth = value.parse()?,
        "child-shape" => o.child_shape = Shape::parse(value)?,
        "child-life" => o.child_life = Some(dur(value)?),
        "hold" => o.hold = dur(value)?,
        "exit-code" => o.exit_code = value.parse().context("expected 0 to 255")?,
        "pid-file" => o.pid_file = Some(value.into()),
        "ready-file" => o.ready_file = Some(value.into()),
        _ => unreachable!("option --{name} is in VALUE_OPTIONS but not handled"),
    }
    Ok(())
}

/// A size as an argument: the largest binary unit that divides it, so it parses back exactly.
fn size_arg(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A duration as an argument: whole milliseconds where exact, nanoseconds otherwise.
fn dur_arg(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{ns}ns")
    }
}

/// Parses `4096`, `512KiB`, `2MiB`, `1.5GiB`: K/M/G/T and KiB/MiB/GiB/TiB are powers of 1024,
/// KB/MB/GB/TB powers of 1000, units case-insensitive; fractions round down to a byte.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => bail!("unknown size unit {unit:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        bail!("expected a size like 4096, 512KiB or 2MiB");
    }
    if frac.contains('.') || frac.len() > 18 {
        bail!("malformed number {number:?}");
    }
    let int: u64 = if int.is_empty() { 0 } else { int.parse()? };
    let whole = int.checked_mul(mult).context("size too large")?;
    let frac_bytes = if frac.is_empty() {
        0
    } else {
        let digits: u128 = frac.parse()?;
        let scale = 10u128.pow(frac.len() as u32);
        u64::try_from(digits * u128::from(mult) / scale).context("size too large")?
    };
    whole.checked_add(frac_bytes).context("size too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Opts> {
        match parse_args(args.iter().map(OsString::from))? {
            Command::Run(o) => Ok(o),
            Command::Help => bail!("help"),
        }
    }

    fn err(args: &[&str]) -> String {
        match parse(args) {
            Ok(o) => panic!("{args:?} parsed as {o:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        assert_eq!(parse_size("2mib").unwrap(), 2 << 20);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("0.5KiB").unwrap(), 512);
        assert_eq!(parse_size(".5k").unwrap(), 512);
        assert_eq!(parse_size("3MB").unwrap(), 3_000_000);
        assert_eq!(parse_size("10 KiB").unwrap(), 10 << 10);
        assert_eq!(parse_size("7B").unwrap(), 7);
        for bad in [
            "",
            "MiB",
            "2XB",
            "-1",
            "1.2.3",
            "2 MiB x",
            "99999999999TiB",
            "0x10",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn defaults() {
        let o = parse(&["linear"]).unwrap();
        assert_eq!(o, Opts::defaults(Shape::Linear));
        assert_eq!(o.step, 2 << 20);
        assert_eq!(o.every, Duration::from_millis(100));
        assert_eq!(o.duration, Duration::from_secs(10));
        assert_eq!(o.child_life(), Duration::from_millis(200));
        assert_eq!(
            parse(&["reuse"]).unwrap().child_life(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn options() {
        let o = parse(&[
            "--kind=shmem",
            "sawtooth",
            "--step",
            "1MiB",
            "--peak",
            "8MiB",
            "--floor-growth",
            "512KiB",
            "--every",
            "50ms",
            "--duration=2s",
            "--hold",
            "1s",
            "--exit-code",
            "7",
            "--pid-file",
            "/tmp/p",
            "--ready-file",
            "/tmp/r",
            "--child-life",
            "1s",
        ])
        .unwrap();
        assert_eq!(o.shape, Shape::Sawtooth);
        assert_eq!(o.kind, Kind::Shmem);
        assert_eq!(
            (o.step, o.peak, o.floor_growth),
            (1 << 20, 8 << 20, 512 << 10)
        );
        assert_eq!(o.every, Duration::from_millis(50));
        assert_eq!(o.duration, Duration::from_secs(2));
        assert_eq!(o.hold, Duration::from_secs(1));
        assert_eq!(o.exit_code, 7);
        assert_eq!(o.pid_file, Some(PathBuf::from("/tmp/p")));
        assert_eq!(o.ready_file, Some(PathBuf::from("/tmp/r")));
        assert_eq!(o.child_life(), Duration::from_secs(1));
        let o = parse(&[
            "tree",
            "--children",
            "2",
            "--depth",
            "3",
            "--child-shape",
            "steps",
        ])
        .unwrap();
        assert_eq!((o.children, o.depth, o.child_shape), (2, 3, Shape::Steps));
        let o = parse(&["fds", "--count", "3", "--pool", "8", "--every", "50ms"]).unwrap();
        assert_eq!((o.shape, o.count, o.pool), (Shape::Fds, 3, 8));
        assert_eq!(o.to_args().join(" "), "fds --every 50ms --count 3 --pool 8");
        assert_eq!(
            parse(&["flat", "--step", "1", "--step", "2"]).unwrap().step,
            2
        );
    }

    #[test]
    fn help() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["linear", "--step", "1", "--help"],
        ] {
            let cmd = parse_args(args.iter().map(OsString::from));
            assert!(matches!(cmd, Ok(Command::Help)), "{args:?}");
        }
    }

    #[test]
    fn errors_name_the_option_and_value() {
        let e = err(&["linear", "--step", "2XB"]);
        assert!(e.contains("--step") && e.contains("2XB"), "{e}");
        let e = err(&["linear", "--every", "soon"]);
        assert!(e.contains("--every") && e.contains("soon"), "{e}");
        let e = err(&["linear", "--kind", "heap"]);
        assert!(e.contains("--kind") && e.contains("heap"), "{e}");
        let e = err(&["linear", "--exit-code", "256"]);
        assert!(e.contains("--exit-code"), "{e}");
        assert!(err(&["linear", "--bogus", "3"]).contains("unknown option --bogus"));
        assert!(err(&["linear", "-x"]).contains("unknown option -x"));
        assert!(err(&["linear", "--step"]).contains("--step needs a value"));
        assert!(err(&[]).contains("missing SHAPE"));
        assert!(err(&["wobble"]).contains("unknown shape \"wobble\""));
        assert!(err(&["linear", "flat"]).contains("unexpected argument"));
        assert!(err(&["linear", "--every", "0s"]).contains("--every"));
        assert!(err(&["steps", "--hold-ticks", "0"]).contains("--hold-ticks"));
        assert!(err(&["threads", "--count", "0"]).contains("--count"));
        assert!(err(&["linear", "--pool", "4"]).contains("--pool is for threads and fds"));
        assert!(err(&["fds", "--pool", "many"]).contains("--pool"));
        assert!(err(&["sawtooth", "--peak", "0"]).contains("--peak"));
        assert!(err(&["spike", "--duration", "1s"]).contains("--spike-len"));
        assert!(err(&["tree", "--child-shape", "tree"]).contains("--depth"));
        assert!(err(&["tree", "--children", "0"]).contains("--children"));
        let e = err(&["tree", "--child-shape", "spike", "--duration", "1s"]);
        assert!(
            e.contains("--child-shape") && e.contains("--spike-len"),
            "{e}"
        );
    }

    #[test]
    fn child_args_round_trip() {
        let o = parse(&[
            "sawtooth",
            "--kind",
            "file",
            "--step",
            "3KiB",
            "--every",
            "1.5ms",
            "--duration",
            "1s 1ns",
            "--child-life",
            "7ms",
            "--pid-file",
            "p",
            "--exit-code",
            "3",
            "--floor-growth",
            "1GiB",
            "--hold",
            "2s",
        ])
        .unwrap();
        assert_eq!(
            o.to_args().join(" "),
            "sawtooth --kind file --step 3KiB --floor-growth 1GiB --every 1500000ns \
             --duration 1000000001ns --child-life 7ms --hold 2000ms"
        );
        assert_eq!(parse(&["flat"]).unwrap().to_args(), ["flat"]);
        let args = o.to_args().into_iter().map(OsString::from);
        let back = match parse_args(args).unwrap() {
            Command::Run(o) => o,
            Command::Help => panic!("help"),
        };
        let expected = Opts {
            pid_file: None,
            exit_code: 0,
            ..o
        };
        assert_eq!(back, expected);
    }
}

//! `cargo xtask bench overhead --sites`, its second table: how long each tool takes to name
//! the code that grows a leaking program, and whether it names the right one.
//!
//! The program (compiled here with frame pointers) leaks 64 KiB per step in `grow_cache` and,
//! between steps, mallocs and frees 4 KiB blocks in `churn`: far more calls, and more bytes
//! allocated, than the leak, so a tool that counts allocations rather than what stays names
//! the wrong function. Each tool runs it to its end and gives its answer: memtools with
//! `record --sites` then `sites`; heaptrack then `heaptrack_print`'s leaks; bpftrace with
//! memleak's method (live blocks per stack, printed while the program still runs, since
//! bpftrace symbolizes through the live process). Time to answer = the run plus the analysis.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::run::{command_on, on_cpu};
use super::workloads::Tools;
use crate::bench::{median, remove_store, spread};

/// The leaking program: `grow-answer STEPS CHURNS` leaks STEPS x 64 KiB in grow_cache, with
/// CHURNS x 64 malloc/free pairs of 4 KiB in churn after each; a second's pause at the end
/// lets a tracer that symbolizes through the live process print its last answer.
const PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
char *kept[1 << 16];
int nkept;
volatile long sink;
__attribute__((noinline)) void grow_cache(void) {
    char *p = malloc(64 * 1024);
    memset(p, 1, 64 * 1024);
    kept[nkept++ & 0xffff] = p;
}
__attribute__((noinline)) void churn(void) {
    for (int i = 0; i < 64; i++) {
        char *q = malloc(4096);
        memset(q, 2, 4096);
        sink += q[i];
        free(q);
    }
}
int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 400, churns = argc > 2 ? atoi(argv[2]) : 50;
    for (int s = 0; s < steps; s++) {
        grow_cache();
        for (int i = 0; i < churns; i++)
            churn();
    }
    /* Read, so the compiler keeps what it leaks. */
    printf("%d %ld\n", kept[(nkept - 1) & 0xffff][5], sink);
    sleep(1);
    return 0;
}
"#;

/// 400 steps of 50 churns: 26 MiB leaked, 1.28 million malloc/free pairs.
const ARGS: [&str; 2] = ["400", "50"];

/// The function every tool should name.
const LEAKING: &str = "grow_cache";

#[derive(Clone, Copy)]
enum Tool {
    Memtools,
    Heaptrack,
    Bpftrace,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Memtools => "memtools `record --sites` + `sites`",
            Tool::Heaptrack => "heaptrack + `heaptrack_print --print-leaks`",
            Tool::Bpftrace => {
                "bpftrace, memleak's method (uprobes on malloc/free, live bytes per stack)"
            }
        }
    }
}

/// The table: each available tool, `rounds` alternating runs, its answer and time to it.
pub(crate) fn time_to_answer(t: &Tools, rounds: usize) -> Result<String> {
    let program = compile(&t.dir)?;
    let mut tools = vec![Tool::Memtools];
    if t.heaptrack {
        tools.push(Tool::Heaptrack);
    }
    if t.bpftrace && t.libc.is_some() {
        tools.push(Tool::Bpftrace);
    }
    let mut native = Vec::new();
    let mut figures: Vec<(Vec<f64>, Vec<String>)> = vec![(Vec::new(), Vec::new()); tools.len()];
    for round in 1..=rounds {
        let start = Instant::now();
        quiet(&mut command_on(
            t.pin.map(|p| p.0),
            vec![program.clone().into_os_string()],
        )?)
        .args(ARGS)
        .status()
        .context("running the leaking program")?;
        native.push(start.elapsed().as_secs_f64());
        for (i, tool) in tools.iter().enumerate() {
            let start = Instant::now();
            let answer = answer(t, *tool, &program);
            crate::bench::procs::sweep();
            let answer = answer.with_context(|| format!("the answer of {}", tool.name()))?;
            let seconds = start.elapsed().as_secs_f64();
            eprintln!(
                "xtask: round {round}/{rounds}: {}: `{answer}` in {seconds:.2} s",
                tool.name()
            );
            figures[i].0.push(seconds);
            figures[i].1.push(answer);
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Time to the answer \"which code grows it\" on a program leaking 64 KiB at a time in \
         `{LEAKING}` between 1.28 million malloc/free pairs in `churn` ({:.2} s ±{:.0} % on its \
         own, a second of it a pause at the end), median of {rounds} alternating rounds:\n",
        median(&native),
        spread(&native) * 100.0
    );
    let _ = writeln!(
        s,
        "| tool | answer | right | time to answer | x the program alone |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|");
    for (tool, (seconds, answers)) in tools.iter().zip(&figures) {
        let right = answers.iter().filter(|a| a.as_str() == LEAKING).count();
        let _ = writeln!(
            s,
            "| {} | `{}` | {right} of {} | {:.2} s ±{:.0} % | {:.1} |",
            tool.name(),
            answers.last().map_or("", String::as_str),
            answers.len(),
            median(seconds),
            spread(seconds) * 100.0,
            median(seconds) / median(&native)
        );
    }
    s.push('\n');
    Ok(s)
}

/// The program, compiled with frame pointers and debug information into `dir`.
fn compile(dir: &Path) -> Result<PathBuf> {
    let source = dir.join("grow-answer.c");
    let program = dir.join("grow-answer");
    std::fs::write(&source, PROGRAM)?;
    let status = Command::new("gcc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&program)
        .arg(&source)
        .status()
        .context("cannot run gcc (`cargo xtask setup` installs it)")?;
    if !status.success() {
        bail!("gcc could not compile {}", source.display());
    }
    Ok(program)
}

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
}

/// Runs `program` under one tool and returns the function it names as the top growth site.
fn answer(t: &Tools, tool: Tool, program: &Path) -> Result<String> {
    let (workload_cpu, tool_cpu) = (t.pin.map(|p| p.0), t.pin.map(|p| p.1));
    let mut argv = on_cpu(workload_cpu, vec![program.as_os_str().to_owned()]);
    argv.extend(ARGS.iter().map(Into::into));
    match tool {
        Tool::Memtools => {
            let store = t.dir.join("answer.db");
            remove_store(&store);
            let status = quiet(
                command_on(tool_cpu, vec![t.user.clone().into_os_string()])?
                    .args(["record", "--backend", "ebpf", "--sites", "--store"])
                    .arg(&store)
                    .arg("--")
                    .args(&argv),
            )
            .status()?;
            if !status.success() {
                bail!("memtools record --sites failed ({status})");
            }
            let out = Command::new(&t.user)
                .args(["sites", "--window", "all", "--format", "json", "--store"])
                .arg(&store)
                .stderr(Stdio::inherit())
                .output()?;
            if !out.status.success() {
                bail!("memtools sites failed ({})", out.status);
            }
            let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            json.pointer("/0/sites/0/function")
                .and_then(|f| f.as_str())
                .map(str::to_string)
                .context("memtools named no site")
        }
        Tool::Heaptrack => {
            let out = t.dir.join("answer.heaptrack");
            for ext in ["zst", "gz"] {
                let _ = std::fs::remove_file(out.with_extension(format!("heaptrack.{ext}")));
            }
            // Its preload does not survive taskset's exec: heaptrack and the program share
            // the program's CPU.
            let status = quiet(
                command_on(workload_cpu, vec!["heaptrack".into()])?
                    .arg("-o")
                    .arg(&out)
                    .arg(program)
                    .args(ARGS),
            )
            .status()?;
            if !status.success() {
                bail!("heaptrack failed ({status})");
            }
            let data = ["zst", "gz"]
                .iter()
                .map(|ext| out.with_extension(format!("heaptrack.{ext}")))
                .find(|p| p.exists())
                .context("heaptrack wrote no data file")?;
            let printed = Command::new("heaptrack_print")
                .arg("-f")
                .arg(&data)
                .args([
                    "-l", "1", "-p", "0", "-a", "0", "-T", "0", "-n", "1", "-s", "0",
                ])
                .stderr(Stdio::null())
                .output()?;
            let text = String::from_utf8_lossy(&printed.stdout);
            // "MEMORY LEAKS", then "25.17M leaked over 384 calls from", then the function.
            text.lines()
                .skip_while(|l| !l.starts_with("MEMORY LEAKS"))
                .skip_while(|l| !l.contains(" leaked over "))
                .nth(1)
                .map(|f| f.trim().to_string())
                .context("heaptrack_print named no leak")
        }
        Tool::Bpftrace => {
            let libc = t.libc.as_deref().context("no libc found")?;
            let line = argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            let out = command_on(tool_cpu, vec!["bpftrace".into()])?
                .arg("-c")
                .arg(line)
                .arg("-e")
                .arg(memleak_by_stack(libc))
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()?;
            if !out.status.success() {
                bail!("bpftrace failed ({})", out.status);
            }
            top_live_stack(&String::from_utf8_lossy(&out.stdout)).context("bpftrace named no stack")
        }
    }
}

/// memleak's method with stacks: the bytes still live per allocating stack, printed every
/// half second while the program runs.
fn memleak_by_stack(libc: &Path) -> String {
    let l = libc.display();
    format!(
        "uprobe:{l}:malloc /pid == cpid/ {{ @size[tid] = arg0; }}
uretprobe:{l}:malloc /pid == cpid/ {{ @bytes[retval] = @size[tid]; @stk[retval] = ustack(6);
  @live[ustack(6)] = sum(@size[tid]); delete(@size[tid]); }}
uprobe:{l}:free /pid == cpid/ {{ if (@bytes[arg0] != 0) {{ @live[@stk[arg0]] = sum(-@bytes[arg0]);
  delete(@bytes[arg0]); delete(@stk[arg0]); }} }}
interval:ms:500 {{ print(@live); }}
END {{ clear(@bytes); clear(@stk); clear(@size); clear(@live); }}"
    )
}

/// The first frame's function of the stack with the most live bytes in the last complete
/// print of `@live` that named functions (`@live[\n    grow_cache+19\n ...]: 109314048`).
fn top_live_stack(output: &str) -> Option<String> {
    let mut best: Option<(i64, String)> = None;
    let mut last_named: Option<String> = None;
    let mut frame: Option<String> = None;
    let mut in_key = false;
    for line in output.lines() {
        let line = line.trim();
        if line.starts_with("@live[") {
            in_key = true;
            frame = None;
        } else if in_key && line.starts_with("]:") {
            in_key = false;
            let bytes: i64 = line.trim_start_matches("]:").trim().parse().unwrap_or(0);
            if let Some(f) = frame.take()
                && best.as_ref().is_none_or(|(b, _)| bytes > *b)
            {
                best = Some((bytes, f));
            }
        } else if in_key && frame.is_none() && !line.is_empty() {
            let function = line.split('+').next().unwrap_or(line);
            // An address alone (printed after the process exited) names nothing.
            if !function.starts_with("0x") {
                frame = Some(function.to_string());
            }
        } else if line.is_empty() && !in_key {
            // A print ends: keep its answer, start the next from nothing.
            if let Some((_, f)) = best.take() {
                last_named = Some(f);
            }
        }
    }
    best.map(|(_, f)| f).or(last_named)
}

#[cfg(test)]
mod tests {
    use super::top_live_stack;

    #[test]
    fn the_stack_with_the_most_live_bytes_in_the_last_print_is_the_answer() {
        let out = "@live[\n    churn+32\n    main+28\n]: 8192\n@live[\n    grow_cache+19\n    main+18\n]: 65536\n\n@live[\n    grow_cache+19\n    main+18\n]: 131072\n@live[\n    churn+32\n    main+28\n]: 0\n\n@live[\n    0x55\n]: 999999\n";
        assert_eq!(top_live_stack(out).as_deref(), Some("grow_cache"));
        assert_eq!(top_live_stack("nothing"), None);
    }
}

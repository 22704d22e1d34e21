//! memtools as a Prometheus exporter, end to end: a real Prometheus server (the Debian package
//! `prometheus`, which `cargo xtask setup` installs) scraping `record --listen` around a leaking
//! and a steady simulator, the contrib alert rules under `promtool test rules`, and the systemd
//! unit's capabilities enough for `serve` as an unprivileged user.
//!
//! Every process started here is killed when its guard drops, the test failing or not.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{is_root, kill_pid_file, leak_sim, memtools_user, skip};

/// A process killed (and reaped) when the test ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A simulator, by its pid file, killed when the test ends.
struct PidFile(PathBuf);

impl Drop for PidFile {
    fn drop(&mut self) {
        kill_pid_file(&self.0);
    }
}

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus")
}

/// Whether `promtool` and `prometheus` are here: missing in CI is a failure (setup installs
/// them), elsewhere a loud skip.
fn has_prometheus(test: &str) -> bool {
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs("promtool") && runs("prometheus") {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "promtool or prometheus missing in CI: `cargo xtask setup` installs the Debian package prometheus"
    );
    skip(
        test,
        "needs the Debian package prometheus (`cargo xtask setup` installs it)",
    );
    false
}

/// `GET path` over HTTP/1.0 (no chunking): (status, body).
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}

/// A port free on loopback now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `cmd` with stderr read line by line; returns the guard, and the address it serves
/// on once it says `serving http://ADDR/metrics` (its stderr so far on failure).
fn start_serving(mut cmd: Command) -> (Guard, String, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting memtools-user");
    let stderr = child.stderr.take().expect("stderr");
    let guard = Guard(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut said = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(rest) = line.split("serving http://").nth(1) {
                    let addr = rest.split("/metrics").next().unwrap_or("").to_string();
                    return (guard, addr, rx);
                }
                said.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("memtools-user never said where it serves: {said:#?}");
}

/// The value of each `memtools_leak{metric="rss"}` series by pid, from Prometheus' API.
fn leak_values(prometheus: &str) -> Vec<(String, String)> {
    let Ok((200, body)) = http_get(prometheus, "/api/v1/query?query=memtools_leak") else {
        return Vec::new();
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    json["data"]["result"]
        .as_array()
        .map(|series| {
            series
                .iter()
                .filter(|s| s["metric"]["metric"] == "rss")
                .map(|s| {
                    (
                        s["metric"]["pid"].as_str().unwrap_or("").to_string(),
                        s["value"][1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The firing alerts as (name, pid).
fn firing(prometheus: &str) -> Vec<(String, String)> {
    let Ok((200, body)) = http_get(prometheus, "/api/v1/alerts") else {
        return Vec::new();
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    json["data"]["alerts"]
        .as_array()
        .map(|alerts| {
            alerts
                .iter()
                .filter(|a| a["state"] == "firing")
                .map(|a| {
                    (
                        a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                        a["labels"]["pid"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs promtool with `args`, insisting on success.
fn promtool(args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(contrib())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(text) = input {
        stdin
            .write_all(text.as_bytes())
            .expect("writing to promtool");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {said}");
    said
}

#[test]
fn the_contrib_rules_pass_their_tests_and_the_scrape_config_checks() {
    if !has_prometheus("the_contrib_rules_pass_their_tests_and_the_scrape_config_checks") {
        return;
    }
    let said = promtool(&["check", "rules", "memtools.rules.yml"], None);
    assert!(said.contains("SUCCESS: 3 rules found"), "{said}");
    let said = promtool(&["test", "rules", "memtools.rules.test.yml"], None);
    assert!(said.contains("SUCCESS"), "{said}");
    promtool(&["check", "config", "prometheus.yml"], None);
}

#[test]
fn prometheus_scraping_record_listen_sees_the_leak_and_fires_memtools_leak() {
    let test = "prometheus_scraping_record_listen_sees_the_leak_and_fires_memtools_leak";
    if !has_prometheus(test) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (leaky_pid, steady_pid) = (dir.path().join("leaky.pid"), dir.path().join("steady.pid"));
    let _sims = (PidFile(leaky_pid.clone()), PidFile(steady_pid.clone()));
    // A leak of 2.5 MiB/s and a process that holds 20 MiB, for at most two minutes.
    let script = format!(
        "{sim} linear --step 256KiB --every 100ms --duration 120s --pid-file {a} & \
         {sim} flat --base 20MiB --duration 120s --pid-file {b} & wait",
        sim = leak_sim(),
        a = leaky_pid.display(),
        b = steady_pid.display()
    );
    let mut record = Command::new(memtools_user());
    record
        .args(["record", "--interval", "200ms", "--listen", "127.0.0.1:0"])
        .args(["--analysis-every", "2s", "--store"])
        .arg(dir.path().join("memtools.db"))
        .args(["--", "sh", "-c", &script]);
    let (_record, exporter, _stderr) = start_serving(record);

    // Prometheus with the contrib rules, `for:` shortened from 10 minutes to 5 seconds.
    let rules = std::fs::read_to_string(contrib().join("memtools.rules.yml")).expect("rules");
    assert!(rules.contains("for: 10m"));
    std::fs::write(
        dir.path().join("rules.yml"),
        rules.replace("for: 10m", "for: 5s"),
    )
    .expect("writing the rules");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
         scrape_configs:\n  - job_name: memtools\n    static_configs:\n      - targets: ['{exporter}']\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).expect("writing the config");
    let prometheus = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log");
    let _prometheus = Guard(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus"),
    );

    let pid_of = |p: &Path| std::fs::read_to_string(p).map(|s| s.trim().to_string());
    let deadline = Instant::now() + Duration::from_secs(110);
    let (mut leak_seen, mut steady_seen, mut fired) = (false, false, false);
    while Instant::now() < deadline && !(fired && steady_seen) {
        std::thread::sleep(Duration::from_millis(500));
        let (Ok(leaky), Ok(steady)) = (pid_of(&leaky_pid), pid_of(&steady_pid)) else {
            continue;
        };
        for (pid, value) in leak_values(&prometheus) {
            if pid == steady {
                assert_eq!(value, "0", "the steady process was judged a leak");
                steady_seen = true;
            }
            if pid == leaky && value == "1" {
                leak_seen = true;
            }
        }
        let alerts = firing(&prometheus);
        assert!(
            !alerts.iter().any(|(_, pid)| *pid == steady),
            "an alert fired for the steady process: {alerts:?}"
        );
        fired = alerts
            .iter()
            .any(|(name, pid)| name == "MemtoolsLeak" && *pid == leaky);
    }
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert!(
        steady_seen,
        "Prometheus never had a verdict for the steady process\n{log}"
    );
    assert!(
        leak_seen,
        "Prometheus never saw memtools_leak == 1 for the leak\n{log}"
    );
    assert!(fired, "MemtoolsLeak never fired for the leak\n{log}");

    // What Prometheus scraped is what promtool accepts.
    let (status, exposition) = http_get(&exporter, "/metrics").expect("scraping the exporter");
    assert_eq!(status, 200);
    assert!(exposition.contains("memtools_recorder_samples_written_total"));
    let said = promtool(&["check", "metrics"], Some(&exposition));
    assert!(said.trim().is_empty(), "promtool check metrics: {said}");
}

#[test]
fn serve_runs_unprivileged_with_the_capabilities_of_the_systemd_unit() {
    let test = "serve_runs_unprivileged_with_the_capabilities_of_the_systemd_unit";
    if !is_root() {
        skip(test, "needs root (to drop to an unprivileged user)");
        return;
    }
    let unit = std::fs::read_to_string(contrib().join("memtools-serve.service")).expect("unit");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in the unit"))
            .trim()
            .to_string()
    };
    let ambient = value("AmbientCapabilities=");
    assert_eq!(ambient, value("CapabilityBoundingSet="));
    for needed in ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE"] {
        assert!(ambient.contains(needed), "{ambient}");
    }
    let caps: Vec<String> = ambient
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = caps.join(",");
    // ExecStart's own flags, with this test's store and address.
    let exec = value("ExecStart=");
    let mut args: Vec<String> = exec.split_whitespace().skip(1).map(String::from).collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    nix::unistd::chown(
        dir.path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .expect("giving the directory to nobody");
    let set = |args: &mut Vec<String>, flag: &str, v: String| {
        let i = args.iter().position(|a| a == flag).expect(flag);
        args[i + 1] = v;
    };
    set(
        &mut args,
        "--store",
        dir.path().join("serve.db").display().to_string(),
    );
    set(&mut args, "--listen", "127.0.0.1:0".into());
    args.extend(["--top".into(), "100000".into()]);

    // A root process of 64 MiB for it to see.
    let pid_file = dir.path().join("sim.pid");
    let _sim = PidFile(pid_file.clone());
    let _sim_child = Guard(
        Command::new(leak_sim())
            .args(["flat", "--base", "64MiB", "--duration", "60s", "--pid-file"])
            .arg(&pid_file)
            .spawn()
            .expect("starting leak-sim"),
    );
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(format!("--inh-caps={caps}"))
        .arg(format!("--ambient-caps={caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg(memtools_user())
        .args(&args);
    let (_serve, exporter, stderr) = start_serving(cmd);
    let sim_pid = loop {
        if let Ok(p) = std::fs::read_to_string(&pid_file)
            && !p.trim().is_empty()
        {
            break p.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let series = format!(
        "memtools_process_memory_bytes{{pid=\"{sim_pid}\",name=\"leak-sim\",kind=\"anon\"}}"
    );
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok((200, body)) = http_get(&exporter, "/metrics")
            && body.contains(&series)
        {
            last = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let said: Vec<String> = stderr.try_iter().collect();
    assert!(
        last.contains(&series),
        "serve as nobody never showed root's leak-sim ({series}); it said {said:#?}"
    );
    // The eBPF backend loaded, where this build has it (a build without the nightly records
    // with /proc and says so).
    let unbuilt = said.iter().any(|l| l.contains("eBPF object was not built"));
    if unbuilt {
        skip(
            test,
            "the eBPF half: memtools-user was built without its eBPF object",
        );
    } else {
        assert!(
            last.contains("memtools_recorder_info{backend=\"ebpf\""),
            "not recording with eBPF under the unit's capabilities: {said:#?}"
        );
    }
}

/// The value of an unlabelled series in an exposition.
fn value_of(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes until `check` holds (returning the exposition), or panics after 30 s.
fn scrape_until(exporter: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok((200, body)) = http_get(exporter, "/metrics") {
            if check(&body) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("never {what}; last scrape:\n{last}");
}

/// Stops `serve` as systemd would (SIGTERM) and insists on a clean exit.
fn stop(mut serve: Guard) {
    let pid = nix::unistd::Pid::from_raw(serve.0.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = serve.0.wait().expect("waiting for serve");
    assert!(status.success(), "serve ended with {status}");
}

#[test]
fn serve_follows_processes_by_name_and_prunes_what_is_older_than_its_retention() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The simulator under a name no other process on this machine has.
    let named = dir.path().join("mt-named-sim");
    std::os::unix::fs::symlink(leak_sim(), &named).expect("naming the simulator");
    let pid_file = dir.path().join("sim.pid");
    let _sim = PidFile(pid_file.clone());
    let _sim_child = Guard(
        Command::new(&named)
            .args(["flat", "--base", "8MiB", "--duration", "60s", "--pid-file"])
            .arg(&pid_file)
            .spawn()
            .expect("starting the simulator"),
    );
    let store = dir.path().join("serve.db");
    let serve = || {
        let mut cmd = Command::new(memtools_user());
        cmd.args(["serve", "--name", "mt-named-*", "--backend", "procfs"])
            .args([
                "--interval",
                "200ms",
                "--listen",
                "127.0.0.1:0",
                "--retain",
                "2h",
            ])
            .arg("--store")
            .arg(&store);
        start_serving(cmd)
    };
    let (first, exporter, _) = serve();
    let sim_pid = loop {
        match std::fs::read_to_string(&pid_file) {
            Ok(p) if !p.trim().is_empty() => break p.trim().to_string(),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let series = format!(
        "memtools_process_memory_bytes{{pid=\"{sim_pid}\",name=\"mt-named-sim\",kind=\"rss\"}}"
    );
    let body = scrape_until(&exporter, "saw the named process", |b| b.contains(&series));
    // It alone: nothing else on this machine has that name.
    assert_eq!(
        value_of(&body, "memtools_recorder_processes_followed"),
        Some(1.0),
        "{body}"
    );
    stop(first);

    // The session is marked for retention; make its samples three hours old.
    let sql = rusqlite::Connection::open(&store).expect("the store");
    let (command, retain): (String, i64) = sql
        .query_row("SELECT command, retain_ns FROM sessions", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("one session");
    assert_eq!(command, "--name mt-named-*");
    assert_eq!(retain, 2 * 3600 * 1_000_000_000);
    let old: i64 = sql
        .query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0))
        .expect("samples");
    assert!(old > 0);
    sql.execute_batch(
        "UPDATE samples SET t_ns = t_ns - 10800000000000;
         UPDATE processes SET exit_ns = exit_ns - 10800000000000;
         UPDATE sessions SET start_ns = start_ns - 10800000000000,
                             end_ns = end_ns - 10800000000000,
                             last_sample_ns = last_sample_ns - 10800000000000;",
    )
    .expect("ageing the session");
    drop(sql);

    // The next serve prunes them at once, counts them, and the emptied session goes.
    let (second, exporter, _) = serve();
    let body = scrape_until(&exporter, "pruned the old session", |b| {
        value_of(b, "memtools_retention_pruned_samples_total") == Some(old as f64)
    });
    assert!(body.contains(&series), "{body}");
    stop(second);
    let sql = rusqlite::Connection::open(&store).expect("the store");
    let sessions: i64 = sql
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .expect("sessions");
    assert_eq!(sessions, 1, "the old session is gone, the new one stays");
}

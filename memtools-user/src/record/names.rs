//! Following processes by name (`--name PATTERN`): any backend, told to follow every process,
//! behind a filter that passes on only the processes whose name matches a pattern, and their
//! descendants, as they appear or exec into a matching name.

use std::collections::{HashMap, HashSet};

use memtools::model::{BackendKind, Lost, ProcessInfo, ProcessKey};

use super::{Backend, Clock, Event, RecordError, Sink};

/// A shell-style pattern (`*`, `?`, `[...]`) matched against a process's name (its `comm`, as
/// `ps` shows it: at most 15 characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern(glob::Pattern);

impl NamePattern {
    /// Whether a process of this name matches.
    pub fn matches(&self, name: &str) -> bool {
        self.0.matches(name)
    }
}

impl std::str::FromStr for NamePattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("an empty name matches no process".into());
        }
        glob::Pattern::new(s)
            .map(NamePattern)
            .map_err(|e| format!("`{s}` is not a name pattern like java or postgres* ({e})"))
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A backend that follows every process, filtered by name.
pub struct ByName {
    inner: Box<dyn Backend>,
    state: Taken,
}

impl ByName {
    /// Filters `inner`, which must follow every process.
    pub fn new(inner: Box<dyn Backend>, patterns: Vec<NamePattern>) -> ByName {
        ByName {
            inner,
            state: Taken {
                patterns,
                taken: HashSet::new(),
                taken_pids: HashSet::new(),
                passed: HashMap::new(),
            },
        }
    }
}

/// Which processes are followed.
struct Taken {
    patterns: Vec<NamePattern>,
    /// Followed: matching processes and their descendants.
    taken: HashSet<ProcessKey>,
    taken_pids: HashSet<u32>,
    /// Seen and not followed, kept until they exit in case they exec into a matching name.
    passed: HashMap<ProcessKey, ProcessInfo>,
}

/// The sink the inner backend reports to: passes on what is taken.
struct Filter<'a> {
    by: &'a mut Taken,
    out: &'a mut dyn Sink,
}

impl Taken {
    fn matches(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(name))
    }

    fn take(&mut self, key: ProcessKey) {
        self.taken.insert(key);
        self.taken_pids.insert(key.pid);
    }
}

impl Sink for Filter<'_> {
    fn event(&mut self, event: Event<'_>) -> Result<(), RecordError> {
        let by = &mut *self.by;
        match event {
            Event::Started(info) => {
                let child_of_taken = info.ppid.is_some_and(|pp| by.taken_pids.contains(&pp));
                if by.matches(&info.name) || child_of_taken {
                    by.take(info.key);
                    self.out.event(Event::Started(info))?;
                } else {
                    by.passed.insert(info.key, info.clone());
                }
            }
            Event::Renamed { key, name, cmdline } => {
                if by.taken.contains(&key) {
                    self.out.event(Event::Renamed { key, name, cmdline })?;
                } else if by.matches(name)
                    && let Some(mut info) = by.passed.remove(&key)
                {
                    // Exec'ed into a matching name: followed from now on.
                    info.name = name.to_string();
                    info.cmdline = cmdline.to_string();
                    by.take(key);
                    self.out.event(Event::Started(&info))?;
                } else if let Some(info) = by.passed.get_mut(&key) {
                    info.name = name.to_string();
                    info.cmdline = cmdline.to_string();
                }
            }
            Event::Sample(key, sample) => {
                if by.taken.contains(&key) {
                    self.out.event(Event::Sample(key, sample))?;
                }
            }
            Event::Sites { key, stack, counts } => {
                if by.taken.contains(&key) {
                    self.out.event(Event::Sites { key, stack, counts })?;
                }
            }
            Event::PeakRss(key, peak) => {
                if by.taken.contains(&key) {
                    self.out.event(Event::PeakRss(key, peak))?;
                }
            }
            Event::Exited(key, time) => {
                by.passed.remove(&key);
                if by.taken.remove(&key) {
                    by.taken_pids.remove(&key.pid);
                    self.out.event(Event::Exited(key, time))?;
                }
            }
        }
        Ok(())
    }
}

impl Backend for ByName {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn poll(&mut self, clock: &Clock, sink: &mut dyn Sink) -> Result<(), RecordError> {
        let mut filter = Filter {
            by: &mut self.state,
            out: sink,
        };
        self.inner.poll(clock, &mut filter)
    }

    fn finish(&mut self, clock: &Clock, sink: &mut dyn Sink) -> Result<(), RecordError> {
        let mut filter = Filter {
            by: &mut self.state,
            out: sink,
        };
        self.inner.finish(clock, &mut filter)
    }

    fn followed(&self) -> usize {
        self.state.taken.len()
    }

    fn unreadable(&self) -> u64 {
        self.inner.unreadable()
    }

    fn lost(&self) -> Lost {
        self.inner.lost()
    }

    fn detail(&self) -> Option<String> {
        self.inner.detail()
    }

    fn stop(&mut self) {
        self.inner.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtools::model::{Metrics, Sample};

    /// A backend that reports a fixed list of events once.
    struct Scripted(Vec<Script>);

    enum Script {
        Start(u32, u32, &'static str),
        Rename(u32, &'static str),
        Sample(u32),
        Exit(u32),
    }

    fn key(pid: u32) -> ProcessKey {
        ProcessKey { pid, start_time: 1 }
    }

    impl Backend for Scripted {
        fn kind(&self) -> BackendKind {
            BackendKind::Procfs
        }
        fn poll(&mut self, _: &Clock, sink: &mut dyn Sink) -> Result<(), RecordError> {
            let sample = Sample {
                time: 5,
                metrics: Metrics::default(),
            };
            for s in self.0.drain(..) {
                match s {
                    Script::Start(pid, ppid, name) => sink.event(Event::Started(&ProcessInfo {
                        key: key(pid),
                        ppid: Some(ppid),
                        name: name.into(),
                        cmdline: String::new(),
                    }))?,
                    Script::Rename(pid, name) => sink.event(Event::Renamed {
                        key: key(pid),
                        name,
                        cmdline: name,
                    })?,
                    Script::Sample(pid) => sink.event(Event::Sample(key(pid), &sample))?,
                    Script::Exit(pid) => sink.event(Event::Exited(key(pid), 9))?,
                }
            }
            Ok(())
        }
        fn followed(&self) -> usize {
            0
        }
    }

    #[derive(Default)]
    struct Seen(Vec<String>);

    impl Sink for Seen {
        fn event(&mut self, e: Event<'_>) -> Result<(), RecordError> {
            self.0.push(match e {
                Event::Started(i) => format!("start {} {}", i.key.pid, i.name),
                Event::Renamed { key, name, .. } => format!("rename {} {name}", key.pid),
                Event::Sample(k, _) => format!("sample {}", k.pid),
                Event::Exited(k, _) => format!("exit {}", k.pid),
                Event::PeakRss(k, peak) => format!("peak {} {peak}", k.pid),
                Event::Sites { key, counts, .. } => format!("sites {} {}", key.pid, counts.len()),
            });
            Ok(())
        }
    }

    #[test]
    fn matching_names_their_children_and_processes_that_exec_into_one_are_followed() {
        use Script::*;
        let script = vec![
            Start(10, 1, "postgres"),
            Start(11, 10, "sh"), // a child of a followed process
            Start(20, 1, "bash"),
            Sample(10),
            Sample(11),
            Sample(20),
            Start(21, 20, "bash"),
            Rename(21, "postgres"), // exec'ed into a matching name
            Sample(21),
            Exit(20),
            Exit(11),
        ];
        let patterns = vec!["postgre?".parse().unwrap()];
        let mut b = ByName::new(Box::new(Scripted(script)), patterns);
        let mut seen = Seen::default();
        b.poll(&Clock::start(), &mut seen).unwrap();
        assert_eq!(
            seen.0,
            vec![
                "start 10 postgres",
                "start 11 sh",
                "sample 10",
                "sample 11",
                "start 21 postgres",
                "sample 21",
                "exit 11",
            ]
        );
        assert_eq!(b.followed(), 2);
        assert!("".parse::<NamePattern>().is_err());
        assert!("[".parse::<NamePattern>().is_err());
    }
}

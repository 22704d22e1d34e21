//! Where a recording's events go: the store, through its writer, and the bookkeeping for the
//! summary. When the store cannot be written (a full disk, an I/O error, the file removed), the
//! recording stops being written, once and for good: what was committed is kept, the reason
//! is said once, and the recorder carries on looking after the command.

use std::collections::HashMap;

use super::phases::{PhaseEvent, PhaseKind};
use super::session::CutShort;
use super::{Clock, Event, RecordError, Sink, limits};
use memtools::model::{ExitStatus, Lost, Metric, ProcessKey, ProcessLimits, TimeNs};
use memtools::store::{ProcessId, SessionWriter, StoreError};
use memtools::units;

/// How many malformed phase lines are kept to report.
const MAX_IGNORED_LINES: usize = 10;

pub(super) struct Tracked {
    pub id: ProcessId,
    pub pid: u32,
    pub name: String,
    pub peak: u64,
}

/// Why the store stopped being written, and the last sample time it kept.
#[derive(Clone, Debug)]
pub(super) struct Loss {
    pub reason: String,
    pub kept_until: Option<TimeNs>,
    /// When it was noticed (set when it is said).
    pub at: Option<TimeNs>,
    /// Whether the session is marked as cut short already.
    pub marked: bool,
}

/// The recorder's sink: the store writer plus what the summary needs.
pub(super) struct Recording<'s> {
    pub writer: SessionWriter<'s>,
    pub processes: HashMap<ProcessKey, Tracked>,
    pub loss: Option<Loss>,
    pub ignored_phase_lines: Vec<String>,
}

impl<'s> Recording<'s> {
    pub fn new(writer: SessionWriter<'s>) -> Self {
        Recording {
            writer,
            processes: HashMap::new(),
            loss: None,
            ignored_phase_lines: Vec::new(),
        }
    }

    /// Whether samples are still being stored.
    pub fn writing(&self) -> bool {
        self.loss.is_none()
    }

    /// Runs one write; the first failure ends writing for good (the open transaction is given
    /// up, what was committed stays).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut SessionWriter<'s>) -> Result<T, StoreError>,
    ) -> Option<T> {
        if self.loss.is_some() {
            return None;
        }
        match f(&mut self.writer) {
            Ok(v) => Some(v),
            Err(e) => {
                self.lose(format!("cannot write the store ({e})"));
                None
            }
        }
    }

    /// Stops writing, for `reason`, and marks the session cut short at once (while the
    /// space held for it is still free), ending it at the last sample kept.
    pub fn lose(&mut self, reason: String) {
        if self.loss.is_none() {
            self.writer.abandon();
            let kept_until = self.writer.committed_until();
            let marked =
                kept_until.is_some_and(|end| self.writer.cut_short(&reason, end, None).is_ok());
            self.loss = Some(Loss {
                reason,
                kept_until,
                at: None,
                marked,
            });
        }
    }

    /// Records what the backend could not record so far.
    pub fn write_lost(&mut self, lost: Lost) {
        self.write(|w| w.set_lost(lost));
    }

    /// Records how the tree is held (it changed after the command started).
    pub fn write_tree(&mut self, text: &str) {
        self.write(|w| w.set_tree(text));
    }

    /// Once, when writing stopped: the line that says so.
    pub fn loss_to_say(&mut self, clock: &Clock, command: bool) -> Option<String> {
        let start = clock.start_wall();
        let samples = self.writer.samples_written();
        let loss = self.loss.as_mut()?;
        if loss.at.is_some() {
            return None;
        }
        let now = clock.now();
        loss.at = Some(now);
        let kept = match loss.kept_until {
            Some(t) => format!(
                "{} up to {} in are kept",
                units::samples(samples),
                units::duration_ns(t - start)
            ),
            None => "no samples were kept".to_string(),
        };
        Some(format!(
            "recording stopped after {}: {}; {kept}{}",
            units::duration_ns(now - start),
            loss.reason,
            if command {
                "; the command runs on to its end"
            } else {
                ""
            }
        ))
    }

    /// Ends the session: finished, or marked as cut short when the store failed (tried again
    /// now: the disk may have room by now). Returns the cut, if any.
    pub fn end(mut self, at: TimeNs, exit: Option<ExitStatus>) -> Option<CutShort> {
        self.flush();
        if self.loss.is_none()
            && let Err(e) = self.writer.end(at, exit)
        {
            self.lose(format!("cannot write the store ({e})"));
        }
        let loss = self.loss.take()?;
        let end = loss.kept_until.or(loss.at).unwrap_or(at);
        // Again with the command's exit; marked already, a failure here loses only that.
        let unmarked = match self.writer.cut_short(&loss.reason, end, exit) {
            Ok(()) => None,
            Err(_) if loss.marked => None,
            Err(e) => Some(e.to_string()),
        };
        Some(CutShort {
            reason: loss.reason,
            kept_until: loss.kept_until,
            unmarked,
        })
    }

    /// Commits when due.
    pub fn flush_if_due(&mut self) {
        self.write(|w| w.flush_if_due());
    }

    /// Commits everything now.
    pub fn flush(&mut self) {
        self.write(|w| w.flush());
    }

    /// Stores the phase lines that arrived; malformed ones are kept to say.
    pub fn phases(&mut self, events: Vec<PhaseEvent>) {
        for e in events {
            match e.kind {
                PhaseKind::Begin => {
                    self.write(|w| w.begin_phase(&e.text, e.at));
                }
                PhaseKind::End => {
                    if self.write(|w| w.end_phase(&e.text, e.at)) == Some(false) {
                        self.ignore(format!("`end {0}` without a `begin {0}`", e.text));
                    }
                }
                PhaseKind::Malformed => {
                    self.ignore(format!(
                        "`{}` (expected `begin NAME` or `end NAME`)",
                        e.text
                    ));
                }
            }
        }
    }

    fn ignore(&mut self, why: String) {
        if self.ignored_phase_lines.len() < MAX_IGNORED_LINES {
            self.ignored_phase_lines.push(why);
        }
    }
}

impl Sink for Recording<'_> {
    fn event(&mut self, event: Event<'_>) -> Result<(), RecordError> {
        match event {
            Event::Started(info) => {
                if !self.processes.contains_key(&info.key) {
                    let (address_space, open_files) = limits::rlimits(info.key.pid);
                    let limits = ProcessLimits {
                        memory: limits::cgroup_limit(info.key.pid),
                        address_space,
                        open_files,
                        tasks: limits::tasks_limit(info.key.pid),
                    };
                    if let Some(id) = self.write(|w| w.add_process(info, limits)) {
                        let tracked = Tracked {
                            id,
                            pid: info.key.pid,
                            name: info.name.clone(),
                            peak: 0,
                        };
                        self.processes.insert(info.key, tracked);
                    }
                }
            }
            Event::Renamed { key, name, cmdline } => {
                if let Some(id) = self.processes.get(&key).map(|p| p.id)
                    && self
                        .write(|w| {
                            w.rename_process(id, name, cmdline)?;
                            // Limits are set just before an exec: read the new program's.
                            let (address_space, open_files) = limits::rlimits(key.pid);
                            w.set_address_space_limit(id, address_space)?;
                            w.set_open_files_limit(id, open_files)
                        })
                        .is_some()
                    && let Some(p) = self.processes.get_mut(&key)
                {
                    p.name = name.to_string();
                }
            }
            Event::Sample(key, sample) => {
                if let Some(id) = self.processes.get(&key).map(|p| p.id)
                    && self.write(|w| w.add_sample(id, sample)).is_some()
                {
                    let value = sample
                        .metrics
                        .get(Metric::Rss)
                        .or(sample.metrics.vm_size)
                        .unwrap_or(0);
                    if let Some(p) = self.processes.get_mut(&key) {
                        p.peak = p.peak.max(value);
                    }
                }
            }
            Event::Exited(key, time) => {
                if let Some(id) = self.processes.get(&key).map(|p| p.id) {
                    self.write(|w| w.process_exited(id, time));
                }
            }
            Event::Sites { key, stack, counts } => {
                if let Some(id) = self.processes.get(&key).map(|p| p.id) {
                    self.write(|w| w.add_sites(id, stack, counts));
                }
            }
            Event::PeakRss(key, bytes) => {
                if let Some(id) = self.processes.get(&key).map(|p| p.id)
                    && self.write(|w| w.set_peak_rss(id, bytes)).is_some()
                    && let Some(p) = self.processes.get_mut(&key)
                {
                    p.peak = p.peak.max(bytes);
                }
            }
        }
        Ok(())
    }
}

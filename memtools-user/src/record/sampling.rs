//! The sampling loop of a recording: each interval the backend is polled and what it reports is
//! stored (until the store fails); between ticks the loop looks after the command's tree and
//! the stop signals.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::command::Child;
use super::phases::PhaseChannel;
use super::session::{Progress, RecordOptions, Running, Target};
use super::sink::Recording;
use super::stop::{STOP_GRACE, Step, StopSignals, sigint_from_terminal};

/// How often a stop under way is looked after when the interval is longer.
const STOP_CHECK: Duration = Duration::from_millis(100);
use super::{Backend, Clock, RecordError};
use memtools::model::Lost;
use memtools::store::Store;

/// How often the status line is refreshed.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How often the recorder checks that its store is still the file at its path.
const STORE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How the sampling loop ended.
pub(super) struct LoopEnd {
    pub interrupted_by: Option<i32>,
    pub survivors: Vec<u32>,
}

/// Everything the sampling loop works with.
pub(super) struct Sampling<'a, 's> {
    pub backend: &'a mut dyn Backend,
    pub rec: &'a mut Recording<'s>,
    pub store: &'a Store,
    pub clock: &'a Clock,
    pub options: &'a RecordOptions,
    pub running: Option<&'a mut Running>,
    pub phases: Option<&'a mut PhaseChannel>,
    pub signals: &'a StopSignals,
    /// What the backend could not record, as last stored.
    pub lost: Lost,
}

/// What the loop does after a tick.
enum Next {
    Sleep,
    Stop,
}

impl Sampling<'_, '_> {
    /// Polls the backend each interval, stores what it reports (until the store fails), and
    /// looks after the command's tree and the stop signals between ticks.
    pub fn run(
        mut self,
        progress: &mut impl FnMut(&Progress),
        notice: &mut impl FnMut(&str),
    ) -> Result<LoopEnd, RecordError> {
        let mut end = LoopEnd {
            interrupted_by: None,
            survivors: Vec::new(),
        };
        let mut last_progress = Instant::now() - PROGRESS_EVERY;
        let mut last_store_check = Instant::now();
        let started = Instant::now();
        let mut tick: u32 = 0;
        loop {
            let drain = self.record_tick(&mut last_store_check, notice)?;
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                progress(&Progress {
                    session_id: self.rec.writer.session_id(),
                    elapsed: self.clock.elapsed(),
                    processes: self.backend.followed(),
                    seen: self.rec.processes.len(),
                    samples: self.rec.writer.samples_written(),
                    store_bytes: self.store.size_on_disk(),
                    backend: self.backend.kind().name(),
                    drain,
                    events_lost: {
                        let lost = self.backend.lost();
                        lost.processes.saturating_add(lost.events)
                    },
                });
            }
            if let Next::Stop = self.look_after_tree(&mut end, notice) {
                break;
            }
            // Sleep until the next tick. A recorder that fell behind (an overloaded machine)
            // skips the ticks it missed rather than polling back to back to catch up.
            let due = started.elapsed().as_nanos() / self.options.interval.as_nanos().max(1);
            tick = tick
                .saturating_add(1)
                .max(u32::try_from(due).unwrap_or(u32::MAX).saturating_add(1));
            let next = self.wake_at(started + self.options.interval * tick);
            self.wait_until(next, &mut end);
        }
        if let Some(r) = self.running.as_deref_mut() {
            r.child.reap();
        }
        if self.rec.writing() {
            self.backend.finish(self.clock, self.rec)?;
        }
        Ok(end)
    }

    /// One tick's recording: poll, phases, commit, and whether the store is still there; how
    /// long the poll and the commit took (the drain the exporter reports).
    fn record_tick(
        &mut self,
        last_store_check: &mut Instant,
        notice: &mut impl FnMut(&str),
    ) -> Result<Duration, RecordError> {
        let drain_began = Instant::now();
        if self.rec.writing() {
            self.backend.poll(self.clock, self.rec)?;
            let lost = self.backend.lost();
            if lost != self.lost {
                self.lost = lost;
                self.rec.write_lost(lost);
            }
        }
        if let Some(ph) = self.phases.as_deref_mut() {
            self.rec.phases(ph.drain());
        }
        self.rec.flush_if_due();
        let drain = drain_began.elapsed();
        if last_store_check.elapsed() >= STORE_CHECK_EVERY {
            *last_store_check = Instant::now();
            if self.rec.writing() && !self.store.still_there() {
                self.rec.lose(format!(
                    "the store {} was removed or replaced while recording",
                    self.store.path().display()
                ));
            }
        }
        if let Some(line) = self.rec.loss_to_say(self.clock, self.running.is_some()) {
            notice(&line);
        }
        Ok(drain)
    }

    /// Whether the recording is over: the command's tree is gone (stopping what it left and
    /// escalating a stop as it goes), or for running processes, they are gone or time is up.
    fn look_after_tree(&mut self, end: &mut LoopEnd, notice: &mut impl FnMut(&str)) -> Next {
        let over = self
            .options
            .duration
            .is_some_and(|d| self.clock.elapsed() >= d);
        let Some(r) = self.running.as_deref_mut() else {
            let until_stopped = matches!(self.options.target, Target::All | Target::Names(_));
            let all_gone = self.backend.followed() == 0 && !until_stopped;
            return if all_gone || over || end.interrupted_by.is_some() {
                Next::Stop
            } else {
                Next::Sleep
            };
        };
        if over && r.stopper.idle() {
            r.stopper.request(&r.tree, Signal::SIGTERM, false);
        }
        match r.stopper.step(&r.tree, r.child.status().is_some()) {
            Step::Continue => Next::Sleep,
            Step::Done => Next::Stop,
            Step::Leftovers(n) => {
                notice(&format!(
                    "the command exited; {} of its tree {} still running: sent SIGTERM, SIGKILL in {} s",
                    memtools::units::processes(n as u64),
                    if n == 1 { "is" } else { "are" },
                    STOP_GRACE.as_secs()
                ));
                Next::Sleep
            }
            Step::GaveUp(survivors) => {
                end.survivors = survivors;
                Next::Stop
            }
        }
    }

    /// When to wake for the tick due at `tick`: sooner when `--duration` ends before it, or
    /// while a stop is under way (its escalation is due within STOP_GRACE), so a long interval
    /// never holds up the end of a recording.
    fn wake_at(&self, tick: Instant) -> Instant {
        let now = Instant::now();
        let mut next = tick;
        if let Some(d) = self.options.duration {
            next = next.min(now + d.saturating_sub(self.clock.elapsed()));
        }
        if self.running.as_deref().is_some_and(|r| !r.stopper.idle()) {
            next = next.min(now + STOP_CHECK);
        }
        next
    }

    /// Sleeps until `next`, waking for the command's exit and for stop signals (passed on to
    /// the tree).
    fn wait_until(&mut self, next: Instant, end: &mut LoopEnd) {
        loop {
            if let Some(r) = self.running.as_deref_mut() {
                let was_running = r.child.status().is_none();
                r.child.reap();
                if was_running && r.child.status().is_some() {
                    return;
                }
            }
            if let Some(sig) = self.signals.take() {
                if let Some(r) = self.running.as_deref_mut() {
                    let from_terminal = sig == libc::SIGINT && sigint_from_terminal();
                    let signal = Signal::try_from(sig).unwrap_or(Signal::SIGTERM);
                    r.stopper.request(&r.tree, signal, from_terminal);
                }
                end.interrupted_by.get_or_insert(sig);
                return;
            }
            let now = Instant::now();
            if now >= next {
                return;
            }
            // Woken by the command's exit or a signal, not by a timer of its own.
            Child::wait(self.running.as_deref().map(|r| &r.child), next - now);
        }
    }
}

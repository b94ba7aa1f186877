//! What happens to instances: feeding inputs to slots (their own and the retiring ones),
//! carrying out the actions, exits from the reaper, readiness signals, stop signals.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::restart::History;
use super::slot::{self, Action, Input, Phase, ReadyBy, Run};
use super::{rollout, Mode, Role, Shutdown, Supervisor};
use crate::control::protocol::ReloadStep;
use crate::process::reaper::Exit;

/// A stop signal repeated sooner than this after the first is the same stop delivered
/// twice (to hotrun and to its process group), not a request to kill at once.
pub(super) const REPEAT_GAP: Duration = Duration::from_millis(200);

/// Whether a stop signal that arrives while hotrun stops means "kill at once": only when it
/// comes REPEAT_GAP or more after the first (or the stop did not come from a signal).
pub(super) fn repeat_kills(first_signal: Option<Instant>, now: Instant) -> bool {
    first_signal.is_none_or(|first| now.saturating_duration_since(first) >= REPEAT_GAP)
}

impl Supervisor {
    /// Feeds one input to the slot's instance and carries out the actions.
    pub(super) fn apply(&mut self, a: usize, s: usize, input: Input, now: Instant) {
        let app = &mut self.apps[a];
        let slot = &mut app.slots[s];
        let before = slot.phase.run().copied();
        let was_final = slot.phase.is_final();
        let phase = std::mem::replace(&mut slot.phase, Phase::Stopped { exit: None });
        let restarts = slot.history.restarts;
        let (next, actions) = slot::step(phase, input, now, &app.settings, &mut slot.history);
        slot.phase = next;
        if slot.history.restarts > restarts {
            if let Some(m) = &self.metrics {
                m.restarted(&app.plan.name);
            }
        }
        if let Phase::Errored { exit } | Phase::Stopped { exit: Some(exit) } = &slot.phase {
            if !was_final && *exit != Exit::Code(0) && self.shutdown == Shutdown::Running {
                self.last_failure = Some(exit.as_code());
            }
        }
        if slot.restart_after_stop && matches!(slot.phase, Phase::Stopped { .. }) {
            slot.restart_after_stop = false;
            let stopped = std::mem::replace(&mut slot.phase, Phase::Stopped { exit: None });
            let (next, _) =
                slot::step(stopped, Input::Start, now, &app.settings, &mut slot.history);
            slot.phase = next;
        }
        for action in actions {
            self.act(a, s, before, action, now);
        }
        let after = self.apps[a].slots[s].phase.run().copied();
        if let Some(old) = before.filter(|b| Some(b.serial) != after.map(|r| r.serial)) {
            self.forget(old);
        }
    }

    /// Feeds one input to a retiring instance of the slot; drops it once it is gone.
    pub(super) fn apply_retiring(
        &mut self,
        a: usize,
        s: usize,
        i: usize,
        input: Input,
        now: Instant,
    ) {
        let app = &mut self.apps[a];
        let slot = &mut app.slots[s];
        let phase = slot.retiring.remove(i);
        let run = phase.run().copied();
        let mut scratch = History::default();
        let (next, actions) = slot::step(phase, input, now, &app.settings, &mut scratch);
        let gone = next.is_final();
        let final_exit = match &next {
            Phase::Stopped { exit } => *exit,
            _ => None,
        };
        if !gone {
            slot.retiring.insert(i, next);
        }
        for action in actions {
            self.act(a, s, run, action, now);
        }
        if gone {
            if let Some(run) = run {
                let id = self.apps[a].slots[s].id;
                let label = self.label(a, s);
                let said = final_exit.map_or("gone".to_string(), |e| e.to_string());
                // A successor that never kept its slot is newer than the slot's instance.
                let current = self.apps[a].slots[s].phase.run().map(|r| r.serial);
                let which = match current {
                    Some(c) if run.serial > c => "new instance",
                    Some(_) => "old instance",
                    None => "instance",
                };
                let message = format!("{label} {which} (pid {}) stopped: {said}", run.pid);
                let step = ReloadStep::Stopped {
                    pid: run.pid,
                    exit: said,
                };
                self.emit(Some(a), Some(id), step, message);
                self.forget(run);
            }
            self.retired(a, s, now);
        }
    }

    pub(super) fn act(
        &mut self,
        a: usize,
        s: usize,
        target: Option<Run>,
        action: Action,
        now: Instant,
    ) {
        match action {
            Action::Spawn => match self.spawn_run(a, s, Role::Current, now) {
                Ok(run) => self.apply(a, s, Input::Spawned(run), now),
                Err(_) => self.apply(a, s, Input::SpawnFailed, now),
            },
            Action::AskToStop => {
                if let Some(run) = target {
                    self.ask_to_stop(a, run);
                }
            }
            Action::Kill => {
                if let Some(run) = target {
                    self.signal_tree(run, Signal::SIGKILL);
                    let killed_stopping = self.apps[a].slots[s]
                        .retiring
                        .iter()
                        .chain(std::iter::once(&self.apps[a].slots[s].phase))
                        .any(|p| matches!(p, Phase::Stopping { run: r, killed: true, .. } if r.serial == run.serial));
                    if killed_stopping {
                        let id = self.apps[a].slots[s].id;
                        let message = format!(
                            "{} pid {} killed after kill_timeout",
                            self.label(a, s),
                            run.pid
                        );
                        let step = ReloadStep::Killed { pid: run.pid };
                        self.emit(Some(a), Some(id), step, message);
                    }
                }
            }
            Action::Say(msg) => {
                let label = self.label(a, s);
                self.logs.say(&format!("{label} {msg}"));
            }
            Action::NotReadyInTime(mut msg) => {
                let label = self.label(a, s);
                if let Some(probe) = target.and_then(|r| self.probe_detail(r.serial)) {
                    msg.push_str(&format!("; {probe}"));
                }
                self.logs.say(&format!("{label} {msg}; still waiting"));
                self.check.not_ready(&self.apps[a].plan.name, &msg);
            }
            Action::StopOverdue(msg) => {
                let label = self.label(a, s);
                self.logs.say(&format!(
                    "{label} {msg}; sending SIGKILL to its process group"
                ));
                self.check.unclean(&label);
            }
            Action::GaveUp(msg) => {
                let label = self.label(a, s);
                let app = &mut self.apps[a];
                if !app.gave_up_said {
                    app.gave_up_said = true;
                    self.logs.say(&format!("{label} {msg}"));
                }
                self.check.errored(&self.apps[a].plan.name);
            }
        }
    }

    /// `kill_signal` to the run's group, or the IPC message 'shutdown' when the app asks
    /// for that (also during reloads, where PM2 forgets it).
    pub(super) fn ask_to_stop(&mut self, a: usize, run: Run) {
        let app = &self.apps[a];
        if app.plan.shutdown_with_message {
            if let Some(io) = self.runs.get(&run.serial) {
                if io.send_message(&serde_json::json!("shutdown")).is_ok() {
                    return;
                }
            }
        }
        self.signal_tree(run, app.settings.kill_signal);
    }

    /// A readiness signal from the run `serial`.
    pub(super) fn on_ready(&mut self, serial: u64, by: ReadyBy) {
        let Some(by) = self.gate_ready(serial, by) else {
            return;
        };
        let now = self.fx.now();
        match self.locate(serial) {
            Some((a, s, Role::Current)) => self.apply(a, s, Input::Ready(by), now),
            Some((a, s, Role::Successor)) if by.counts(&self.apps[a].settings) => {
                self.rollout_input(a, rollout::Input::Ready { slot: s, by }, now)
            }
            _ => {}
        }
    }

    pub(super) fn on_reaped(&mut self, exits: Vec<(i32, Exit)>) {
        let now = self.fx.now();
        for (pid, exit) in exits {
            if let Some(&a) = self.builds.get(&pid) {
                self.on_build_exit(a, exit, now);
                continue;
            }
            if self.exec_probe_exited(pid, exit) {
                continue;
            }
            // Not an instance: an orphan handed to hotrun, or the guard. Reaped, nothing more.
            let Some(&serial) = self.pids.get(&pid) else {
                continue;
            };
            match self.locate(serial) {
                Some((a, s, Role::Current)) if self.took_slot_in_reload(a, s) => {
                    self.promoted_exited(a, s, exit, now)
                }
                Some((a, s, Role::Current)) => self.apply(a, s, Input::Exited(exit), now),
                Some((a, s, Role::Successor)) => {
                    self.rollout_input(a, rollout::Input::Exited { slot: s, exit }, now)
                }
                Some((a, s, Role::Retiring(i))) => {
                    self.apply_retiring(a, s, i, Input::Exited(exit), now)
                }
                None => {}
            }
        }
    }

    pub(super) fn on_stop_signal(&mut self, sig: Signal, now: Instant) {
        let delay = self.shutdown_delay();
        match self.shutdown {
            Shutdown::Running
                if self.stop_at.is_none() && sig == Signal::SIGTERM && !delay.is_zero() =>
            {
                self.logs.say(&format!(
                    "SIGTERM received: not ready any more; every instance serves {} ms more (shutdown_delay), then stops (again to stop at once)",
                    delay.as_millis()
                ));
                self.first_stop_signal = Some(now);
                self.stop_at = Some(now + delay);
            }
            Shutdown::Running if self.stop_at.is_some() => {
                if repeat_kills(self.first_stop_signal, now) {
                    self.logs.say(&format!(
                        "{} received again: stopping every instance now",
                        sig.as_str()
                    ));
                    self.first_stop_signal = Some(now);
                    self.stop_all();
                }
            }
            Shutdown::Running => {
                self.logs.say(&format!(
                    "{} received: stopping every instance (again to kill at once)",
                    sig.as_str()
                ));
                self.first_stop_signal = Some(now);
                self.stop_all();
            }
            Shutdown::Graceful | Shutdown::Immediate
                if !repeat_kills(self.first_stop_signal, now) =>
            {
                // One stop delivered twice (Ctrl-C, `timeout`, which signal hotrun and
                // its process group): not a second request.
            }
            Shutdown::Graceful | Shutdown::Immediate => {
                self.shutdown = Shutdown::Immediate;
                self.logs.say(&format!(
                    "{} received again: killing every instance",
                    sig.as_str()
                ));
                let runs: Vec<Run> = self
                    .apps
                    .iter()
                    .flat_map(|app| &app.slots)
                    .flat_map(|slot| std::iter::once(&slot.phase).chain(&slot.retiring))
                    .filter_map(|phase| phase.run().copied())
                    .collect();
                for run in runs {
                    self.signal_tree(run, Signal::SIGKILL);
                }
            }
        }
    }

    /// How long hotrun keeps serving after SIGTERM: `--shutdown-delay`, or the longest
    /// `shutdown_delay` of its apps.
    fn shutdown_delay(&self) -> Duration {
        // `hotrun check` is no orchestrated server: a stop there is a stop.
        if let Mode::Check { .. } = self.mode {
            return Duration::ZERO;
        }
        self.shutdown_delay.unwrap_or_else(|| {
            self.apps
                .iter()
                .filter(|a| !a.removed)
                .map(|a| a.plan.shutdown_delay)
                .max()
                .unwrap_or_default()
        })
    }

    /// Graceful stop of everything (SIGTERM, SIGINT, `hotrun stop`, the end of a check).
    pub(super) fn stop_all(&mut self) {
        if self.shutdown != Shutdown::Running {
            return;
        }
        // A stop during the shutdown_delay (`hotrun stop`, a second signal) ends it.
        self.stop_at = None;
        self.shutdown = Shutdown::Graceful;
        self.kill_builds();
        let now = self.fx.now();
        for a in 0..self.apps.len() {
            self.abort_rollout(a, "hotrun is stopping", now);
            for s in 0..self.apps[a].slots.len() {
                self.apps[a].slots[s].restart_after_stop = false;
                self.apply(a, s, Input::Stop, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_repeat_after_the_gap_kills_at_once() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // (first stop signal, the repeat's time, kills)
        let table = [
            (Some(t0), ms(0), false),
            (Some(t0), ms(5), false),
            (Some(t0), ms(199), false),
            (Some(t0), ms(200), true),
            (Some(t0), ms(2000), true),
            // hotrun stop (not a signal), then a signal: at once.
            (None, ms(1), true),
        ];
        for (first, now, kills) in table {
            assert_eq!(repeat_kills(first, now), kills, "{first:?} {now:?}");
        }
    }
}

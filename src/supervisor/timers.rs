//! Time in the runner: when the loop must wake next (the earliest deadline of every
//! slot, rollout, build, debounce window, memory sample, schedule and stop), the tick
//! that gives each what is due, and when everything has ended.

use std::time::{Duration, Instant};

use super::rollout::{self, Rollout};
use super::slot::{Input, Phase};
use super::{Mode, Shutdown, Supervisor, DRAIN_GRACE, START_BATCH};

impl Supervisor {
    /// The earliest instant anything needs a tick (a minute away when nothing does).
    pub(super) fn next_deadline(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(60);
        for (a, app) in self.apps.iter().enumerate() {
            // A first start waits for its build: no wake-up for it until the build is done.
            let waiting_for_build = self.building_first(a);
            for slot in &app.slots {
                for phase in std::iter::once(&slot.phase).chain(&slot.retiring) {
                    if waiting_for_build && matches!(phase, Phase::Pending { .. }) {
                        continue;
                    }
                    if let Some(d) = phase.deadline() {
                        wake = wake.min(d);
                    }
                }
            }
            if let Some(d) = app.reload.rollout().and_then(Rollout::deadline) {
                wake = wake.min(d);
            }
            if let Some(d) = app.window.deadline() {
                wake = wake.min(d);
            }
        }
        for a in 0..self.apps.len() {
            if let Some(d) = self.build_deadline(a) {
                wake = wake.min(d);
            }
        }
        for pending in &self.unannounced {
            wake = wake.min(pending.until);
        }
        if let Some(t) = self.memory_check_at {
            wake = wake.min(t);
        }
        if let Some(t) = self.probe_deadline() {
            wake = wake.min(t);
        }
        if let Some(t) = self.schedule_deadline() {
            wake = wake.min(t);
        }
        if let Some(t) = self.stop_at {
            wake = wake.min(t);
        }
        if let Some(t) = self.upgrade_deadline(now) {
            wake = wake.min(t);
        }
        if let Some(t) = self.ended_at {
            wake = wake.min(t + DRAIN_GRACE);
        }
        wake
    }

    /// What the loop sees of a draining instance: its accept queue empty, and then
    /// whether every connection it accepted has had its request read.
    fn drained(&self, phase: &Phase) -> Option<Input> {
        let Phase::Draining { run, .. } = phase else {
            return None;
        };
        if !self.queue_empty(run.serial) {
            return None;
        }
        let ports = self.ports_of(run.serial);
        let settled = !ports.is_empty() && !self.fx.requests_pending(run.pid, &ports);
        Some(Input::QueueEmpty { settled })
    }

    /// Gives everything whose deadline has come a tick.
    pub(super) fn tick(&mut self, now: Instant) {
        if self.stop_at.is_some_and(|t| t <= now) {
            self.stop_at = None;
            self.logs
                .say("shutdown_delay passed: stopping every instance");
            self.stop_all();
        }
        self.announce_due(now);
        self.index_trees_if_stopping();
        // Starts are paced: the loop answers signals and requests between batches.
        let mut starts = 0;
        for a in 0..self.apps.len() {
            let waiting_for_build = self.building_first(a);
            // The slot count is read each time: carrying out an input may add slots.
            let mut s = 0;
            while s < self.apps[a].slots.len() {
                let phase = &self.apps[a].slots[s].phase;
                let pending = matches!(phase, Phase::Pending { .. });
                let paced = pending && (waiting_for_build || starts >= START_BATCH);
                if phase.deadline().is_some_and(|d| d <= now) && !paced {
                    starts += usize::from(pending);
                    if let Some(input) = self.drained(phase) {
                        self.apply(a, s, input, now);
                    }
                    let group_alive = self.tree_alive(&self.apps[a].slots[s].phase);
                    self.apply(a, s, Input::Tick { group_alive }, now);
                }
                let mut i = 0;
                while i < self.apps[a].slots[s].retiring.len() {
                    let phase = &self.apps[a].slots[s].retiring[i];
                    let len = self.apps[a].slots[s].retiring.len();
                    if phase.deadline().is_some_and(|d| d <= now) {
                        if let Some(input) = self.drained(phase) {
                            self.apply_retiring(a, s, i, input, now);
                        }
                        let group_alive = self.tree_alive(&self.apps[a].slots[s].retiring[i]);
                        self.apply_retiring(a, s, i, Input::Tick { group_alive }, now);
                    }
                    if self.apps[a].slots[s].retiring.len() == len {
                        i += 1;
                    }
                }
                s += 1;
            }
            if self.apps[a]
                .reload
                .rollout()
                .and_then(Rollout::deadline)
                .is_some_and(|d| d <= now)
            {
                self.rollout_input(a, rollout::Input::Tick, now);
            }
        }
        self.check_build_timeouts(now);
        self.run_probes(now);
        self.track_start_windows(now);
        self.fire_changes(now);
        self.run_schedules(now);
        // Memory is sampled only while some app has a limit (no wake-ups otherwise).
        let limits = self
            .apps
            .iter()
            .any(|a| !a.removed && a.plan.max_memory_restart.is_some());
        match self.memory_check_at {
            _ if !limits => self.memory_check_at = None,
            None => self.memory_check_at = Some(now + self.memory_interval),
            Some(t) if t <= now => {
                self.memory_check_at = Some(now + self.memory_interval);
                self.check_memory(now);
            }
            Some(_) => {}
        }
        for a in 0..self.apps.len() {
            self.drop_stopped_surplus(a);
        }
        self.sync_live_sockets();
        self.drive_check(now);
    }

    /// hotrun's exit code once every slot has ended and the output is drained.
    pub(super) fn finished(&mut self, now: Instant) -> Option<i32> {
        let all_final = self.apps.iter().all(|app| {
            app.slots
                .iter()
                .all(|s| s.phase.is_final() && s.retiring.is_empty())
                && app.reload.rollout().is_none()
                && app.build.is_none()
        });
        if !all_final {
            return None;
        }
        let ended = *self.ended_at.get_or_insert(now);
        if !self.run_pipes.is_empty() && now < ended + DRAIN_GRACE {
            return None;
        }
        self.announce_all();
        if self.apps.iter().any(|a| a.reload.rollout().is_some()) {
            // A reload folded behind the one just told has started.
            return None;
        }
        if let Mode::Check { .. } = self.mode {
            return Some(self.check_report());
        }
        let code = match self.shutdown {
            Shutdown::Running => {
                self.logs.say("no instance is running any more; exiting");
                self.last_failure.unwrap_or(0)
            }
            _ => {
                self.logs.say("stopped");
                0
            }
        };
        Some(code)
    }
}

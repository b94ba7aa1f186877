//! Driving rolling reloads: requests go through each app's queue (one reload in flight,
//! the rest folded into one more), the pure `rollout::step` decides, and this file
//! carries out its actions on real processes and answers whoever waits.

use std::time::Instant;

use super::announce::{End, Failed};
use super::rollout::{self, Action, Input, Readiness, Rollout, Trigger};
use super::slot::{Input as SlotInput, Phase, ReadyBy, Run};
use super::state::Reload;
use super::{LastReload, Supervisor};
use crate::control::protocol::{ReloadStep, Response};
use nix::sys::signal::Signal;

/// Why a reload failed: the app's own step, or one of its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// The build failed or timed out (the reason without the app's name).
    Build(String),
    /// The new configuration cannot be applied (e.g. a port that cannot be bound).
    Plan(String),
    /// The successor of slot `slot` failed.
    Instance { slot: usize, reason: String },
    /// The reload was given up before its end: hotrun stops, the app left the file.
    Abandoned(String),
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Failure::Build(r)
            | Failure::Plan(r)
            | Failure::Abandoned(r)
            | Failure::Instance { reason: r, .. } => r,
        }
    }

    /// The event's `failed` field.
    fn kind(&self) -> &'static str {
        match self {
            Failure::Build(_) => "build",
            Failure::Plan(_) => "plan",
            Failure::Instance { .. } => "instance",
            Failure::Abandoned(_) => "abandoned",
        }
    }
}

impl Supervisor {
    /// A reload request for app `a`; `waiter` is a pending `hotrun reload` to answer.
    pub(super) fn request_reload(&mut self, a: usize, trigger: Trigger, waiter: Option<u64>) {
        if self.shutdown != super::Shutdown::Running {
            if let Some(id) = waiter {
                self.answer(
                    id,
                    Some(format!("{}: hotrun is stopping", self.apps[a].plan.name)),
                );
            }
            return;
        }
        let app = &mut self.apps[a];
        match app.queue.request(trigger, waiter) {
            Some(trigger) => self.begin_rollout(a, trigger),
            None => {
                let name = app.plan.name.clone();
                self.logs.say(&format!(
                    "{name}: reload requested during a reload; one more will follow"
                ));
            }
        }
    }

    pub(super) fn begin_rollout(&mut self, a: usize, trigger: Trigger) {
        let now = self.fx.now();
        self.apps[a].reload_began = Some(now);
        if let Some(plan) = self.apps[a].next_plan.take() {
            if let Err(e) = self.apply_plan(a, plan, now) {
                self.logs.say(&e);
                let name = format!("{}: ", self.apps[a].plan.name);
                let reason = e.strip_prefix(&name).unwrap_or(&e).to_string();
                return self.rollout_done(a, &trigger, Some(Failure::Plan(reason)), now);
            }
        }
        // A replacement of some instances runs the same code again: no build for it.
        let builds = trigger.replaces().is_none();
        if builds && self.apps[a].plan.build.is_some() {
            // The rollout starts when the build has succeeded (see build.rs).
            return self.start_build(a, Some(trigger), now);
        }
        self.start_rollout(a, trigger, now);
    }

    /// Starts replacing the slots (the build, if any, has succeeded).
    pub(super) fn start_rollout(&mut self, a: usize, trigger: Trigger, now: Instant) {
        let app = &mut self.apps[a];
        let name = app.plan.name.clone();
        // Slots scaled away or just added are not rolled.
        let slots: Vec<usize> = trigger
            .slots(app.slots.len())
            .into_iter()
            .filter(|&s| {
                !app.slots[s].surplus && !matches!(app.slots[s].phase, Phase::Pending { .. })
            })
            .collect();
        if slots.is_empty() {
            return self.rollout_done(a, &trigger, None, now);
        }
        let surge = app.plan.max_surge.min(slots.len() as u32);
        let message = format!(
            "{name}: rolling reload ({}), {} instance(s), {surge} at a time",
            trigger.as_str(),
            slots.len(),
        );
        let step = ReloadStep::ReloadStarted {
            trigger: trigger.as_str().into(),
            instances: slots.len(),
            surge: surge as usize,
        };
        self.emit(Some(a), None, step, message);
        let app = &mut self.apps[a];
        // Each reload is a start window of its own for the loop guard.
        app.echo.closed(now);
        app.echo.opened(now);
        let surge = app.plan.max_surge as usize;
        // A canary holds a whole-app reload, not the replacement of some instances.
        let canary = app
            .canary_once
            .take()
            .or(app.plan.canary)
            .filter(|_| trigger.replaces().is_none());
        let (rollout, actions) = Rollout::begin_with(trigger.clone(), slots, surge, canary, now);
        app.reload = Reload::Rolling(rollout);
        self.rollout_actions(a, &trigger, actions, now);
    }

    fn readiness(&self, a: usize) -> Readiness {
        let settings = &self.apps[a].settings;
        Readiness {
            listen_timeout: settings.listen_timeout,
            uptime: (!settings.waits_for_signal()).then_some(settings.policy.min_uptime),
            min_ready: self.apps[a].plan.min_ready,
        }
    }

    /// Feeds one input to app `a`'s rollout.
    pub(super) fn rollout_input(&mut self, a: usize, input: Input, now: Instant) {
        let Some(r) = self.apps[a].reload.take_rollout() else {
            return;
        };
        let readiness = self.readiness(a);
        let trigger = r.trigger.clone();
        let (next, actions) = rollout::step(r, input, now, readiness);
        if let Some(next) = next {
            self.apps[a].reload = Reload::Rolling(next);
        }
        self.rollout_actions(a, &trigger, actions, now);
    }

    fn rollout_actions(&mut self, a: usize, trigger: &Trigger, actions: Vec<Action>, now: Instant) {
        for action in actions {
            match action {
                Action::Spawn { slot } => {
                    // The rollout may have ended (a sibling failed) since this was decided.
                    let wanted = self.apps[a].reload.rollout().is_some_and(|r| {
                        r.lanes
                            .iter()
                            .any(|l| l.slot == slot && l.step == rollout::Step::Spawn)
                    });
                    if !wanted {
                        continue;
                    }
                    let input = match self.spawn_run(a, slot, super::Role::Successor, now) {
                        Ok(run) => {
                            let id = self.apps[a].slots[slot].id;
                            let label = self.label(a, slot);
                            let message = format!("{label} new instance started (pid {})", run.pid);
                            let step = ReloadStep::Spawned { pid: run.pid };
                            self.emit(Some(a), Some(id), step, message);
                            Input::Spawned { slot, run }
                        }
                        Err(why) => Input::SpawnFailed { slot, why },
                    };
                    self.rollout_input(a, input, now);
                }
                Action::Promote { slot, run, by } => self.promote(a, slot, run, by, false, now),
                Action::PromoteCanary { slot, run, by } => {
                    self.promote(a, slot, run, by, true, now)
                }
                Action::Release { slot } => self.release_parked(a, Some(slot), now),
                Action::StopSuccessor { run } => self.retire_successor(a, run, now),
                Action::KillSuccessor { run } => self.kill_successor(a, run, now),
                Action::Done => self.rollout_done(a, trigger, None, now),
                Action::Failed { slot, mut reason } => {
                    let probe = self
                        .newest_run(a, slot)
                        .and_then(|serial| self.probe_detail(serial));
                    if let Some(probe) = probe {
                        reason.push_str(&format!("; {probe}"));
                    }
                    self.rollout_done(a, trigger, Some(Failure::Instance { slot, reason }), now);
                }
            }
        }
    }

    /// The successor takes the slot; the old instance is asked to stop and retires (or,
    /// for a canary, is parked: it runs on, out of the kernel's choice, until the hold ends).
    fn promote(&mut self, a: usize, s: usize, run: Run, by: ReadyBy, canary: bool, now: Instant) {
        let label = self.label(a, s);
        let lane = self.runs.get(&run.serial).map(|io| io.lane());
        let slot = &mut self.apps[a].slots[s];
        slot.lane = lane.unwrap_or(slot.lane);
        let old = std::mem::replace(&mut slot.phase, Phase::Online { run, ready_by: by });
        slot.history = Default::default();
        slot.reloads += 1;
        let took = now.saturating_duration_since(run.started).as_millis();
        let (nth, total) = self.apps[a]
            .reload
            .rollout()
            .map_or((1, 1), |r| (r.promoted, r.total));
        let id = self.apps[a].slots[s].id;
        let old_pid = old.run().map(|r| r.pid);
        let park = canary && self.can_drain(a);
        let verb = match (park, self.can_drain(a)) {
            (true, _) => "canary: holding old pid",
            (false, true) => "draining",
            (false, false) => "stopping",
        };
        let stopping = old_pid.map_or(String::new(), |p| match park {
            true => format!("; {verb} {p} until its hold ends"),
            false => format!("; {verb} old pid {p}"),
        });
        let message = format!(
            "{label} reload {nth}/{total}: new pid {} ready ({}) in {took} ms{stopping}",
            run.pid,
            by.as_str()
        );
        let step = ReloadStep::Ready {
            pid: run.pid,
            ready_by: by.as_str().into(),
            after_ms: took as u64,
            old_pid,
            step: nth,
            of: total,
        };
        self.emit(Some(a), Some(id), step, message);
        match old.run().copied() {
            Some(old_run) => {
                // Drained first where its socket is its own: out of the kernel's choice
                // now, asked to stop once its queue is empty and drain_delay has passed.
                let input = match (park, self.can_drain(a)) {
                    (true, _) => SlotInput::Park,
                    (false, true) => SlotInput::Drain,
                    (false, false) => SlotInput::Stop,
                };
                let app = &mut self.apps[a];
                let mut scratch = Default::default();
                let (stopping, actions) =
                    super::slot::step(old, input, now, &app.settings, &mut scratch);
                app.slots[s].retiring.push(stopping);
                self.sync_live_sockets();
                for action in actions {
                    self.act(a, s, Some(old_run), action, now);
                }
            }
            None => self.rollout_input(a, Input::OldGone { slot: s }, now),
        }
    }

    /// Whether slot `s`'s instance took the slot in the reload in flight (its old one is
    /// on its way out, or gone already).
    pub(super) fn took_slot_in_reload(&self, a: usize, s: usize) -> bool {
        self.apps[a].reload.rollout().is_some_and(|r| r.took(s))
    }

    /// A retiring instance of slot `s` is gone; the rollout goes on once none is left.
    pub(super) fn retired(&mut self, a: usize, s: usize, now: Instant) {
        let draining = self.apps[a].reload.rollout().is_some_and(|r| r.draining(s));
        if draining && self.apps[a].slots[s].retiring.is_empty() {
            self.rollout_input(a, Input::OldGone { slot: s }, now);
        }
    }

    /// A successor that exited: SIGKILL to what it left in its group; it retires until
    /// its group is gone.
    pub(super) fn kill_successor(&mut self, a: usize, run: Run, now: Instant) {
        let Some(s) = self.runs.get(&run.serial).map(|io| io.slot) else {
            return;
        };
        self.signal_tree(run, Signal::SIGKILL);
        self.apps[a].slots[s]
            .retiring
            .push(super::slot::killed_run(run, now));
    }

    /// A successor that will not take its slot: stopped like any instance (`kill_signal`,
    /// SIGKILL after `kill_timeout`), retiring until its group is gone.
    fn retire_successor(&mut self, a: usize, run: Run, now: Instant) {
        let Some(s) = self.runs.get(&run.serial).map(|io| io.slot) else {
            return;
        };
        let app = &mut self.apps[a];
        let (stopping, actions) = super::slot::stop_run(run, now, &app.settings);
        app.slots[s].retiring.push(stopping);
        for action in actions {
            self.act(a, s, Some(run), action, now);
        }
    }

    /// Gives up the reload in flight (hotrun stops, the app left the file), in its build
    /// or its rollout: its successors stop, it ends as failed with `why` (its event,
    /// `status`, the metrics, `hotrun check`), and the reload folded behind it is dropped,
    /// its waiters told why. Nothing when no reload is in flight.
    pub(super) fn abort_rollout(&mut self, a: usize, why: &str, now: Instant) {
        let (rollout, trigger) = self.apps[a].reload.end();
        if let Some(r) = &rollout {
            let successors: Vec<Run> = r.successors().map(|(_, run)| *run).collect();
            for run in successors {
                self.retire_successor(a, run, now);
            }
        }
        self.abandon(a, trigger, why, now);
    }

    /// Ends app `a`'s reload in flight (of `trigger`) as abandoned for `why`, and drops
    /// the one folded behind it.
    pub(super) fn abandon(&mut self, a: usize, trigger: Option<Trigger>, why: &str, now: Instant) {
        let name = self.apps[a].plan.name.clone();
        if let Some((_, waiters)) = self.apps[a].queue.next.take() {
            for id in waiters {
                self.answer(id, Some(format!("{name}: {why}")));
            }
        }
        if !self.apps[a].queue.in_flight() {
            return;
        }
        match trigger {
            Some(trigger) => {
                let failure = Failure::Abandoned(why.to_string());
                self.rollout_done(a, &trigger, Some(failure), now);
            }
            None => {
                let (waiters, _) = self.apps[a].queue.finish();
                for id in waiters {
                    self.answer(id, Some(format!("{name}: {why}")));
                }
            }
        }
    }

    /// The rollout ended, well or not: record it; then it is told (`end_reload`), its
    /// waiters answered and the next one started.
    pub(super) fn rollout_done(
        &mut self,
        a: usize,
        trigger: &Trigger,
        failure: Option<Failure>,
        now: Instant,
    ) {
        let name = self.apps[a].plan.name.clone();
        let failed = failure.as_ref().map(|failure| {
            // An instance's failure is told by its label (`web|1`), the app's own (its
            // build, its new configuration) by the app's name.
            let (label, run, instance) = match failure {
                Failure::Instance { slot, .. } => (
                    self.label(a, *slot),
                    self.newest_run(a, *slot),
                    Some(self.apps[a].slots[*slot].id),
                ),
                Failure::Build(_) | Failure::Plan(_) | Failure::Abandoned(_) => {
                    (format!("{name}:"), None, None)
                }
            };
            let reason = failure.reason();
            let message = match failure {
                Failure::Abandoned(_) => format!("{label} reload abandoned: {reason}"),
                _ => format!("{label} reload failed: {reason}; the old instances keep serving"),
            };
            let step = ReloadStep::ReloadFailed {
                reason: reason.to_string(),
                failed: failure.kind().into(),
            };
            Failed {
                message,
                instance,
                step,
                run,
            }
        });
        if failure.is_none() {
            self.apps[a].reloads += 1;
        }
        // No instance stays parked once the reload is over.
        self.release_parked(a, None, now);
        self.forget_unused_ports(a);
        let app = &mut self.apps[a];
        if let Some(m) = &self.metrics {
            let took = app
                .reload_began
                .take()
                .map(|t| now.saturating_duration_since(t));
            m.reload_done(
                &name,
                trigger.as_str(),
                failure.is_none(),
                took.unwrap_or_default(),
            );
        }
        app.last_reload = Some(LastReload {
            trigger: trigger.as_str(),
            ok: failure.is_none(),
            at: chrono::Local::now(),
        });
        self.end_reload(End { app: a, failed }, now);
    }

    /// The newest run of slot `s` (its successor that just failed, in its `retiring`, or
    /// the slot's own instance when it took the slot).
    fn newest_run(&self, a: usize, s: usize) -> Option<u64> {
        let slot = &self.apps[a].slots[s];
        slot.retiring
            .iter()
            .chain(std::iter::once(&slot.phase))
            .filter_map(|p| p.run())
            .map(|r| r.serial)
            .max()
    }

    /// One app of a waiting `hotrun reload` is done; the reply goes once all are.
    pub(super) fn answer(&mut self, id: u64, failure: Option<String>) {
        let Some(pending) = self.replies.get_mut(&id) else {
            return;
        };
        pending.remaining = pending.remaining.saturating_sub(1);
        pending.failures.extend(failure);
        if pending.remaining == 0 {
            let pending = self.replies.remove(&id).expect("present");
            let response = if pending.failures.is_empty() {
                Response::ok("reload done")
            } else {
                Response::err(pending.failures.join("\n"))
            };
            if let Some(reply) = pending.reply {
                let _ = reply.send(response);
            }
        }
    }
}

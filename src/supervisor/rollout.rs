//! The ready-gated rolling reload of one app, as a pure state machine, and the queue that
//! folds requests arriving during a reload into exactly one more.
//!
//! Per slot, `max_surge` slots at a time (1 by default): start a successor with the same
//! instance id, wait until it is ready (and, with `min_ready`, still up that much later),
//! then promote it (the event loop drains the old instance, then stops it with
//! `kill_signal`, SIGKILL after `kill_timeout`). The next slot starts as soon as the
//! successor took its slot, while the old one drains, as long as no more than
//! `2 * max_surge` old instances are still stopping; the rollout is done once every old
//! instance is gone. A successor that
//! exits or is not ready within `listen_timeout` is stopped and the reload ends as failed,
//! its surging siblings stopped too: the old instances keep serving. So does one that
//! exits after it took its slot, before the rollout is done: no further slot is replaced.

use std::time::{Duration, Instant};

use super::slot::{ReadyBy, Run};
use crate::process::reaper::Exit;

/// What asked for a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP to hotrun.
    Signal,
    /// `hotrun reload`.
    Command,
    /// `hotrun check`'s own reloads.
    Check,
    /// Files changed.
    Watch,
    /// `rs` typed in `hotrun watch`.
    Console,
    /// The app's `cron_restart` time came.
    Cron,
    /// These slots' instances use more memory than `max_memory_restart`: only they are
    /// replaced.
    Memory { slots: Vec<usize> },
    /// These slots' instances failed their `liveness_probe`: only they are replaced.
    Liveness { slots: Vec<usize> },
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Command => "hotrun reload",
            Trigger::Check => "hotrun check",
            Trigger::Watch => "watch",
            Trigger::Console => "rs",
            Trigger::Cron => "cron_restart",
            Trigger::Memory { .. } => "memory",
            Trigger::Liveness { .. } => "liveness",
        }
    }

    /// A trigger's name as `as_str` gives it (read back from an upgrade's state); an
    /// unknown one reads as `hotrun reload`.
    pub fn static_name(name: &str) -> &'static str {
        [
            Trigger::Signal,
            Trigger::Command,
            Trigger::Check,
            Trigger::Watch,
            Trigger::Console,
            Trigger::Cron,
            Trigger::Memory { slots: vec![] },
            Trigger::Liveness { slots: vec![] },
        ]
        .iter()
        .map(Trigger::as_str)
        .find(|n| *n == name)
        .unwrap_or("hotrun reload")
    }

    /// The slots a reload for this trigger replaces, of an app with `n` slots.
    pub fn slots(&self, n: usize) -> Vec<usize> {
        match self {
            Trigger::Memory { slots } | Trigger::Liveness { slots } => {
                slots.iter().copied().filter(|&s| s < n).collect()
            }
            _ => (0..n).collect(),
        }
    }

    /// The slots of a replacement of some instances (memory, liveness); `None` for a
    /// whole-app reload. A replacement runs the code in force again: no build for it.
    pub fn replaces(&self) -> Option<&[usize]> {
        match self {
            Trigger::Memory { slots } | Trigger::Liveness { slots } => Some(slots),
            _ => None,
        }
    }

    /// Two requests folded into one reload: a whole-app reload covers any other;
    /// replacements of instances add up (named by the first).
    pub fn merge(self, other: Trigger) -> Trigger {
        let more: Vec<usize> = match (self.replaces(), other.replaces()) {
            (Some(_), Some(more)) => more.to_vec(),
            (Some(_), None) => return other,
            (None, _) => return self,
        };
        let mut first = self;
        if let Trigger::Memory { slots } | Trigger::Liveness { slots } = &mut first {
            for s in more {
                if !slots.contains(&s) {
                    slots.push(s);
                }
            }
        }
        first
    }
}

/// A reload in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub trigger: Trigger,
    pub started: Instant,
    /// The slots being replaced now (`max_surge` of them at most).
    pub lanes: Vec<Lane>,
    /// The slots to replace after them, in order.
    pub rest: Vec<usize>,
    /// How many slots this rollout replaces, and how many have been promoted.
    pub total: usize,
    pub promoted: usize,
    /// The slots replaced already (successor in, old instance gone): a successor of one of
    /// them that exits before the rollout is over still fails it.
    pub replaced: Vec<usize>,
    /// How many successors start at once (`max_surge`, at least 1; 1 while a canary is
    /// still to pass).
    pub surge: usize,
    /// A canary still to pass: the first slot replaced is held before the others roll.
    pub canary: Option<Canary>,
}

/// The first replaced slot holds `hold` before the rest roll: its old instance is parked
/// (running, out of the kernel's choice) so the canary can be rolled back.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    pub hold: Duration,
    /// The canary's slot and the end of its hold, once it took its slot.
    pub holding: Option<(usize, Instant)>,
    /// `max_surge`, once the canary has passed.
    pub surge: usize,
}

/// One slot being replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub slot: usize,
    pub step: Step,
}

/// Where a lane is.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A successor is to be started (the loop answers `Spawned` or `SpawnFailed`).
    Spawn,
    /// The successor runs; ready by a signal, or at `ready_at` when readiness is uptime;
    /// failed at `deadline`.
    Starting {
        run: Run,
        ready_at: Option<Instant>,
        deadline: Instant,
    },
    /// Ready, and must stay up until `until` (`min_ready`) before it takes the slot.
    Settling {
        run: Run,
        by: ReadyBy,
        until: Instant,
    },
    /// The successor took the slot; the old instance is stopping.
    Draining,
}

/// What happens to the rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Spawned {
        slot: usize,
        run: Run,
    },
    SpawnFailed {
        slot: usize,
        why: String,
    },
    /// The successor of `slot` is ready.
    Ready {
        slot: usize,
        by: ReadyBy,
    },
    /// The successor of `slot` exited.
    Exited {
        slot: usize,
        exit: Exit,
    },
    /// The old instance of `slot` is gone (or there was none).
    OldGone {
        slot: usize,
    },
    /// The instance serving `slot` failed its liveness probe: no more slots are traded.
    Unhealthy {
        slot: usize,
        reason: String,
    },
    Tick,
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a successor for this slot.
    Spawn { slot: usize },
    /// The successor is ready: it becomes the slot's instance, the old one is stopped.
    Promote { slot: usize, run: Run, by: ReadyBy },
    /// The canary is ready: it becomes the slot's instance, the old one is parked.
    PromoteCanary { slot: usize, run: Run, by: ReadyBy },
    /// The canary passed its hold: its slot's parked old instance drains and stops.
    Release { slot: usize },
    /// Stop a successor that will not take its slot (gracefully: it may already be
    /// serving requests on the shared socket).
    StopSuccessor { run: Run },
    /// SIGKILL what a successor that exited left in its group.
    KillSuccessor { run: Run },
    /// The reload finished: every slot was replaced.
    Done,
    /// The reload ended early; every old instance still serving keeps serving.
    Failed { slot: usize, reason: String },
}

/// How a successor proves it is ready, and how many are started at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The longest wait for a signal.
    pub listen_timeout: Duration,
    /// `Some(min_uptime)` when staying up is the readiness (no signal expected).
    pub uptime: Option<Duration>,
    /// How long a successor must stay up after its ready signal (`min_ready`).
    pub min_ready: Duration,
}

impl Step {
    fn run(&self) -> Option<&Run> {
        match self {
            Step::Starting { run, .. } | Step::Settling { run, .. } => Some(run),
            _ => None,
        }
    }
}

impl Rollout {
    /// Starts a reload of these slots (at least one), `surge` at a time, in order.
    pub fn begin(
        trigger: Trigger,
        slots: Vec<usize>,
        surge: usize,
        now: Instant,
    ) -> (Rollout, Vec<Action>) {
        Rollout::begin_with(trigger, slots, surge, None, now)
    }

    /// `begin`, with a canary that holds `canary` before the rest roll.
    pub fn begin_with(
        trigger: Trigger,
        slots: Vec<usize>,
        surge: usize,
        canary: Option<Duration>,
        now: Instant,
    ) -> (Rollout, Vec<Action>) {
        let surge = surge.max(1).min(slots.len().max(1));
        let canary = canary.map(|hold| Canary {
            hold,
            holding: None,
            surge,
        });
        let surge = if canary.is_some() { 1 } else { surge };
        let total = slots.len();
        let mut slots = slots.into_iter();
        let lanes: Vec<Lane> = slots
            .by_ref()
            .take(surge)
            .map(|slot| Lane {
                slot,
                step: Step::Spawn,
            })
            .collect();
        let actions = lanes
            .iter()
            .map(|l| Action::Spawn { slot: l.slot })
            .collect();
        (
            Rollout {
                trigger,
                started: now,
                lanes,
                rest: slots.collect(),
                total,
                promoted: 0,
                replaced: Vec::new(),
                surge,
                canary,
            },
            actions,
        )
    }

    /// Whether this rollout will still replace slot `s` (or is replacing it).
    pub fn covers(&self, s: usize) -> bool {
        self.lanes.iter().any(|l| l.slot == s) || self.rest.contains(&s)
    }

    /// When the rollout wants a `Tick`.
    pub fn deadline(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .filter_map(|l| match &l.step {
                Step::Starting {
                    ready_at, deadline, ..
                } => Some(ready_at.map_or(*deadline, |r| r.min(*deadline))),
                Step::Settling { until, .. } => Some(*until),
                _ => None,
            })
            .chain(self.canary.as_ref().and_then(|c| c.holding).map(|(_, t)| t))
            .min()
    }

    /// Lane `i`'s successor takes its slot: the canary's is held (its old instance
    /// parked), any other's old instance stops.
    fn promote(&mut self, i: usize, run: Run, by: ReadyBy, now: Instant) -> Action {
        let slot = self.lanes[i].slot;
        self.lanes[i].step = Step::Draining;
        self.promoted += 1;
        match self.canary.as_mut() {
            Some(c) if c.holding.is_none() => {
                c.holding = Some((slot, now + c.hold));
                Action::PromoteCanary { slot, run, by }
            }
            _ => Action::Promote { slot, run, by },
        }
    }

    /// The successors that have not taken their slot yet.
    pub fn successors(&self) -> impl Iterator<Item = (usize, &Run)> {
        self.lanes
            .iter()
            .filter_map(|l| l.step.run().map(|r| (l.slot, r)))
    }

    /// Whether slot `s` is draining (its successor took it; the old one is stopping).
    pub fn draining(&self, s: usize) -> bool {
        self.lanes
            .iter()
            .any(|l| l.slot == s && l.step == Step::Draining)
    }

    /// Whether slot `s`'s successor took it in this rollout (its old one stops or is gone).
    pub fn took(&self, s: usize) -> bool {
        self.draining(s) || self.replaced.contains(&s)
    }

    /// Starts the next slots while fewer than `surge` successors start and no more than
    /// `2 * surge` old instances stop.
    fn fill(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.canary.is_some() {
            // Nothing more rolls before the canary has passed.
            return actions;
        }
        loop {
            let stopping = self
                .lanes
                .iter()
                .filter(|l| l.step == Step::Draining)
                .count();
            let starting = self.lanes.len() - stopping;
            if self.rest.is_empty() || starting >= self.surge || stopping > 2 * self.surge {
                return actions;
            }
            let slot = self.rest.remove(0);
            self.lanes.push(Lane {
                slot,
                step: Step::Spawn,
            });
            actions.push(Action::Spawn { slot });
        }
    }
}

/// Ends the rollout as failed at `slot`: its successor is dealt with by `first`, every
/// other successor that has not taken its slot is stopped.
fn fail(
    r: Rollout,
    slot: usize,
    first: Option<Action>,
    reason: String,
) -> (Option<Rollout>, Vec<Action>) {
    let mut actions: Vec<Action> = first.into_iter().collect();
    for (s, run) in r.successors() {
        if s != slot {
            actions.push(Action::StopSuccessor { run: *run });
        }
    }
    actions.push(Action::Failed { slot, reason });
    (None, actions)
}

/// The transition function: `None` means the rollout is over (see the actions for how).
pub fn step(
    mut r: Rollout,
    input: Input,
    now: Instant,
    readiness: Readiness,
) -> (Option<Rollout>, Vec<Action>) {
    let lane_of = |r: &Rollout, slot: usize| r.lanes.iter().position(|l| l.slot == slot);
    match input {
        Input::Spawned { slot, run } => {
            if let Some(i) = lane_of(&r, slot).filter(|&i| r.lanes[i].step == Step::Spawn) {
                r.lanes[i].step = Step::Starting {
                    run,
                    ready_at: readiness.uptime.map(|u| now + u),
                    deadline: now
                        + readiness
                            .listen_timeout
                            .max(readiness.uptime.unwrap_or_default()),
                };
            }
            (Some(r), vec![])
        }
        Input::SpawnFailed { slot, why } => fail(
            r,
            slot,
            None,
            format!("the new instance could not start: {why}"),
        ),
        Input::Ready { slot, by } => {
            let Some(i) = lane_of(&r, slot) else {
                return (Some(r), vec![]);
            };
            let Step::Starting { run, .. } = r.lanes[i].step else {
                return (Some(r), vec![]);
            };
            if readiness.min_ready.is_zero() {
                let mut actions = vec![r.promote(i, run, by, now)];
                actions.extend(r.fill());
                (Some(r), actions)
            } else {
                r.lanes[i].step = Step::Settling {
                    run,
                    by,
                    until: now + readiness.min_ready,
                };
                (Some(r), vec![])
            }
        }
        Input::Exited { slot, exit } => {
            let Some(i) = lane_of(&r, slot) else {
                if r.replaced.contains(&slot) {
                    let reason = format!(
                        "the new instance exited ({exit}) after it had replaced its old one, before the reload was done"
                    );
                    return fail(r, slot, None, reason);
                }
                return (Some(r), vec![]);
            };
            match r.lanes[i].step.clone() {
                Step::Starting { run, .. } => {
                    let up = now.saturating_duration_since(run.started).as_millis();
                    let reason = format!(
                        "the new instance exited ({exit}) after {up} ms, before it was ready"
                    );
                    fail(r, slot, Some(Action::KillSuccessor { run }), reason)
                }
                Step::Settling { run, until, .. } => {
                    let early = until.saturating_duration_since(now).as_millis();
                    let reason = format!(
                        "the new instance exited ({exit}) {early} ms before the end of min_ready ({} ms)",
                        readiness.min_ready.as_millis()
                    );
                    fail(r, slot, Some(Action::KillSuccessor { run }), reason)
                }
                // It took the slot and died before the reload was done: no more slots are
                // traded for the new version (the loop gives the slot its old instance
                // back if that one was not asked to stop yet).
                Step::Draining => {
                    let reason = format!(
                        "the new instance exited ({exit}) after it had taken its slot, before the reload was done"
                    );
                    fail(r, slot, None, reason)
                }
                Step::Spawn => (Some(r), vec![]),
            }
        }
        Input::Tick => {
            let mut actions = Vec::new();
            for i in 0..r.lanes.len() {
                let slot = r.lanes[i].slot;
                match r.lanes[i].step.clone() {
                    Step::Starting {
                        run,
                        ready_at,
                        deadline,
                    } => {
                        if ready_at.is_some_and(|t| now >= t) {
                            // Uptime readiness: min_ready is part of it already.
                            actions.push(r.promote(i, run, ReadyBy::Uptime, now));
                        } else if now >= deadline {
                            let reason = format!(
                                "the new instance was not ready within listen_timeout ({} ms)",
                                readiness.listen_timeout.as_millis()
                            );
                            let (next, mut failed) =
                                fail(r, slot, Some(Action::StopSuccessor { run }), reason);
                            actions.append(&mut failed);
                            return (next, actions);
                        }
                    }
                    Step::Settling { run, by, until } if now >= until => {
                        actions.push(r.promote(i, run, by, now));
                    }
                    _ => {}
                }
            }
            // The canary held long enough: its old instance goes, the rest roll.
            if let Some((slot, until)) = r.canary.as_ref().and_then(|c| c.holding) {
                if now >= until {
                    r.surge = r.canary.take().map_or(1, |c| c.surge);
                    actions.push(Action::Release { slot });
                }
            }
            if actions
                .iter()
                .any(|a| matches!(a, Action::Promote { .. } | Action::Release { .. }))
            {
                actions.extend(r.fill());
            }
            (Some(r), actions)
        }
        Input::Unhealthy { slot, reason } => {
            // Its own successor, if one starts, stops too.
            let own = lane_of(&r, slot)
                .and_then(|i| r.lanes[i].step.run().copied())
                .map(|run| Action::StopSuccessor { run });
            fail(r, slot, own, reason)
        }
        Input::OldGone { slot } => {
            let Some(i) = lane_of(&r, slot).filter(|&i| r.lanes[i].step == Step::Draining) else {
                return (Some(r), vec![]);
            };
            r.lanes.remove(i);
            r.replaced.push(slot);
            let actions = r.fill();
            if !actions.is_empty() {
                return (Some(r), actions);
            }
            if r.lanes.is_empty() {
                (None, vec![Action::Done])
            } else {
                (Some(r), vec![])
            }
        }
    }
}

/// Requests for one app: the reload in flight, and at most one more folded behind it.
#[derive(Debug, Default)]
pub struct Queue<W> {
    /// Waiters of the reload in flight (`None` = no reload in flight).
    pub current: Option<Vec<W>>,
    /// The reload to run after it, with its waiters.
    pub next: Option<(Trigger, Vec<W>)>,
}

impl<W> Queue<W> {
    /// A request: returns the trigger to start now, if nothing is in flight.
    pub fn request(&mut self, trigger: Trigger, waiter: Option<W>) -> Option<Trigger> {
        match &mut self.current {
            None => {
                self.current = Some(waiter.into_iter().collect());
                Some(trigger)
            }
            Some(_) => {
                let next = match self.next.take() {
                    Some((queued, waiters)) => (queued.merge(trigger), waiters),
                    None => (trigger, Vec::new()),
                };
                let (_, waiters) = self.next.insert(next);
                waiters.extend(waiter);
                None
            }
        }
    }

    /// The reload in flight ended: its waiters, and the folded reload to start, if any.
    pub fn finish(&mut self) -> (Vec<W>, Option<Trigger>) {
        let done = self.current.take().unwrap_or_default();
        match self.next.take() {
            Some((trigger, waiters)) => {
                self.current = Some(waiters);
                (done, Some(trigger))
            }
            None => (done, None),
        }
    }

    pub fn in_flight(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests;

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
        }
    }

    /// The slots a reload for this trigger replaces, of an app with `n` slots.
    pub fn slots(&self, n: usize) -> Vec<usize> {
        match self {
            Trigger::Memory { slots } => slots.iter().copied().filter(|&s| s < n).collect(),
            _ => (0..n).collect(),
        }
    }

    /// Two requests folded into one reload: a whole-app reload covers any other; memory
    /// replacements add up.
    pub fn merge(self, other: Trigger) -> Trigger {
        match (self, other) {
            (Trigger::Memory { mut slots }, Trigger::Memory { slots: more }) => {
                for s in more {
                    if !slots.contains(&s) {
                        slots.push(s);
                    }
                }
                Trigger::Memory { slots }
            }
            (Trigger::Memory { .. }, whole) => whole,
            (whole, _) => whole,
        }
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
    /// How many successors start at once (`max_surge`, at least 1).
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
    Tick,
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a successor for this slot.
    Spawn { slot: usize },
    /// The successor is ready: it becomes the slot's instance, the old one is stopped.
    Promote { slot: usize, run: Run, by: ReadyBy },
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
        let surge = surge.max(1).min(slots.len().max(1));
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
                surge,
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
            .min()
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

    /// Starts the next slots while fewer than `surge` successors start and no more than
    /// `2 * surge` old instances stop.
    fn fill(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
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
                r.lanes[i].step = Step::Draining;
                r.promoted += 1;
                let mut actions = vec![Action::Promote { slot, run, by }];
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
                            r.lanes[i].step = Step::Draining;
                            r.promoted += 1;
                            actions.push(Action::Promote {
                                slot,
                                run,
                                by: ReadyBy::Uptime,
                            });
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
                        r.lanes[i].step = Step::Draining;
                        r.promoted += 1;
                        actions.push(Action::Promote { slot, run, by });
                    }
                    _ => {}
                }
            }
            if actions.iter().any(|a| matches!(a, Action::Promote { .. })) {
                actions.extend(r.fill());
            }
            (Some(r), actions)
        }
        Input::OldGone { slot } => {
            let Some(i) = lane_of(&r, slot).filter(|&i| r.lanes[i].step == Step::Draining) else {
                return (Some(r), vec![]);
            };
            r.lanes.remove(i);
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
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const SIGNAL: Readiness = Readiness {
        listen_timeout: Duration::from_millis(3000),
        uptime: None,
        min_ready: Duration::ZERO,
    };

    fn run(t0: Instant, pid: i32) -> Run {
        Run {
            pid,
            serial: pid as u64,
            started: t0,
        }
    }

    /// Feeds inputs in order; returns every action and whether the rollout is over.
    fn drive(
        mut r: Rollout,
        inputs: Vec<(u64, Input)>,
        t0: Instant,
        rd: Readiness,
    ) -> (Vec<Action>, bool) {
        let mut all = Vec::new();
        for (at, input) in inputs {
            let (next, actions) = step(r, input, t0 + ms(at), rd);
            all.extend(actions);
            match next {
                Some(n) => r = n,
                None => return (all, true),
            }
        }
        (all, false)
    }

    #[test]
    fn every_slot_is_replaced_one_at_a_time() {
        let t0 = Instant::now();
        let (r, actions) = Rollout::begin(Trigger::Command, vec![0, 1, 2], 1, t0);
        assert_eq!(actions, vec![Action::Spawn { slot: 0 }]);
        let mut inputs = Vec::new();
        for slot in 0..3 {
            inputs.push((
                0,
                Input::Spawned {
                    slot,
                    run: run(t0, 100 + slot as i32),
                },
            ));
            inputs.push((
                50,
                Input::Ready {
                    slot,
                    by: ReadyBy::Message,
                },
            ));
            inputs.push((60, Input::OldGone { slot }));
        }
        let (actions, over) = drive(r, inputs, t0, SIGNAL);
        assert!(over);
        let promoted: Vec<usize> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Promote { slot, .. } => Some(*slot),
                _ => None,
            })
            .collect();
        assert_eq!(promoted, vec![0, 1, 2]);
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::Spawn { .. }))
                .count(),
            2
        );
        assert_eq!(actions.last(), Some(&Action::Done));
    }

    #[test]
    fn the_next_slot_starts_while_old_instances_drain_two_per_surge_at_most() {
        let t0 = Instant::now();
        let (mut r, _) = Rollout::begin(Trigger::Command, (0..5).collect(), 1, t0);
        // (input, the spawns it causes): no old instance is gone until the end.
        let spawned = |slot: usize| Input::Spawned {
            slot,
            run: run(t0, 100 + slot as i32),
        };
        let ready = |slot: usize| Input::Ready {
            slot,
            by: ReadyBy::Message,
        };
        let table: Vec<(Input, Vec<usize>)> = vec![
            (spawned(0), vec![]),
            (ready(0), vec![1]),
            (spawned(1), vec![]),
            (ready(1), vec![2]),
            (spawned(2), vec![]),
            // Three old instances stopping: slot 3 waits for one of them.
            (ready(2), vec![]),
            (Input::OldGone { slot: 1 }, vec![3]),
            (spawned(3), vec![]),
            (ready(3), vec![]),
            (Input::OldGone { slot: 0 }, vec![4]),
        ];
        for (n, (input, want)) in table.into_iter().enumerate() {
            let (next, actions) = step(r, input, t0, SIGNAL);
            let spawns: Vec<usize> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Spawn { slot } => Some(*slot),
                    _ => None,
                })
                .collect();
            assert_eq!(spawns, want, "row {n}");
            r = next.expect("not over yet");
        }
        // Done only once every old instance is gone.
        let rest = vec![
            (0, spawned(4)),
            (0, ready(4)),
            (0, Input::OldGone { slot: 2 }),
            (0, Input::OldGone { slot: 3 }),
        ];
        let (actions, over) = drive(r.clone(), rest.clone(), t0, SIGNAL);
        assert!(!over, "slot 4's old instance still stops: {actions:?}");
        let mut all = rest;
        all.push((0, Input::OldGone { slot: 4 }));
        let (actions, over) = drive(r, all, t0, SIGNAL);
        assert!(over);
        assert_eq!(actions.last(), Some(&Action::Done));
    }

    #[test]
    fn max_surge_replaces_that_many_slots_at_once() {
        let t0 = Instant::now();
        let (r, actions) = Rollout::begin(Trigger::Command, (0..8).collect(), 4, t0);
        assert_eq!(
            actions,
            (0..4)
                .map(|slot| Action::Spawn { slot })
                .collect::<Vec<_>>()
        );
        assert_eq!(r.rest, vec![4, 5, 6, 7]);
        // Slot 2 finishes first: slot 4 starts, the others go on.
        let inputs = vec![
            (
                0,
                Input::Spawned {
                    slot: 2,
                    run: run(t0, 12),
                },
            ),
            (
                10,
                Input::Ready {
                    slot: 2,
                    by: ReadyBy::Message,
                },
            ),
            (20, Input::OldGone { slot: 2 }),
        ];
        let (actions, over) = drive(r, inputs, t0, SIGNAL);
        assert!(!over);
        assert_eq!(
            actions,
            vec![
                Action::Promote {
                    slot: 2,
                    run: run(t0, 12),
                    by: ReadyBy::Message
                },
                Action::Spawn { slot: 4 },
            ]
        );
    }

    #[test]
    fn failures_end_the_rollout_and_keep_the_old_instance() {
        let t0 = Instant::now();
        let succ = run(t0, 7);
        let starting = || {
            let r = Rollout::begin(Trigger::Signal, vec![0, 1], 1, t0).0;
            step(r, Input::Spawned { slot: 0, run: succ }, t0, SIGNAL)
                .0
                .unwrap()
        };
        let table: Vec<(&str, Input, u64, Vec<Action>)> = vec![
            (
                "exits before ready",
                Input::Exited { slot: 0, exit: Exit::Code(1) },
                120,
                vec![
                    Action::KillSuccessor { run: succ },
                    Action::Failed {
                        slot: 0,
                        reason: "the new instance exited (exit code 1) after 120 ms, before it was ready".into(),
                    },
                ],
            ),
            (
                "never ready",
                Input::Tick,
                3000,
                vec![
                    Action::StopSuccessor { run: succ },
                    Action::Failed {
                        slot: 0,
                        reason: "the new instance was not ready within listen_timeout (3000 ms)".into(),
                    },
                ],
            ),
            ("tick before the deadline", Input::Tick, 2999, vec![]),
        ];
        for (name, input, at, want) in table {
            let (next, actions) = step(starting(), input, t0 + ms(at), SIGNAL);
            assert_eq!(actions, want, "{name}");
            assert_eq!(next.is_none(), !want.is_empty(), "{name}");
        }
        let r = Rollout::begin(Trigger::Signal, vec![0, 1], 1, t0).0;
        let (next, actions) = step(
            r,
            Input::SpawnFailed {
                slot: 0,
                why: "node: not found".into(),
            },
            t0,
            SIGNAL,
        );
        assert!(next.is_none());
        assert_eq!(
            actions,
            vec![Action::Failed {
                slot: 0,
                reason: "the new instance could not start: node: not found".into()
            }]
        );
    }

    #[test]
    fn a_failure_stops_the_other_surging_successors() {
        let t0 = Instant::now();
        let r = Rollout::begin(Trigger::Command, vec![0, 1, 2], 3, t0).0;
        let inputs = vec![
            (
                0,
                Input::Spawned {
                    slot: 0,
                    run: run(t0, 10),
                },
            ),
            (
                0,
                Input::Spawned {
                    slot: 1,
                    run: run(t0, 11),
                },
            ),
            (
                0,
                Input::Spawned {
                    slot: 2,
                    run: run(t0, 12),
                },
            ),
            (
                5,
                Input::Exited {
                    slot: 1,
                    exit: Exit::Code(2),
                },
            ),
        ];
        let (actions, over) = drive(r, inputs, t0, SIGNAL);
        assert!(over);
        assert_eq!(actions[0], Action::KillSuccessor { run: run(t0, 11) });
        assert!(actions.contains(&Action::StopSuccessor { run: run(t0, 10) }));
        assert!(actions.contains(&Action::StopSuccessor { run: run(t0, 12) }));
        assert!(matches!(
            actions.last(),
            Some(Action::Failed { slot: 1, .. })
        ));
    }

    #[test]
    fn a_successor_that_took_its_slot_and_exits_fails_the_rollout_replacing_nothing_more() {
        let t0 = Instant::now();
        let (r, _) = Rollout::begin(Trigger::Command, (0..3).collect(), 1, t0);
        let inputs = vec![
            (
                0,
                Input::Spawned {
                    slot: 0,
                    run: run(t0, 10),
                },
            ),
            (
                0,
                Input::Ready {
                    slot: 0,
                    by: ReadyBy::Message,
                },
            ),
            (
                0,
                Input::Spawned {
                    slot: 1,
                    run: run(t0, 11),
                },
            ),
            // Slot 0's successor (it took the slot, its old instance drains) dies.
            (
                30,
                Input::Exited {
                    slot: 0,
                    exit: Exit::Code(3),
                },
            ),
        ];
        let (actions, over) = drive(r, inputs, t0, SIGNAL);
        assert!(over, "{actions:?}");
        let after: Vec<&Action> = actions
            .iter()
            .skip_while(|a| !matches!(a, Action::StopSuccessor { .. }))
            .collect();
        assert_eq!(
            after,
            vec![
                &Action::StopSuccessor { run: run(t0, 11) },
                &Action::Failed {
                    slot: 0,
                    reason: "the new instance exited (exit code 3) after it had taken its slot, before the reload was done".into()
                }
            ]
        );
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::Spawn { slot: 2 })));
    }

    #[test]
    fn min_ready_holds_the_promotion_and_catches_an_early_exit() {
        let t0 = Instant::now();
        let rd = Readiness {
            min_ready: ms(1000),
            ..SIGNAL
        };
        let succ = run(t0, 7);
        let ready = || {
            let r = Rollout::begin(Trigger::Command, vec![0], 1, t0).0;
            let r = step(r, Input::Spawned { slot: 0, run: succ }, t0, rd)
                .0
                .unwrap();
            step(
                r,
                Input::Ready {
                    slot: 0,
                    by: ReadyBy::Message,
                },
                t0 + ms(100),
                rd,
            )
            .0
            .unwrap()
        };
        assert_eq!(ready().deadline(), Some(t0 + ms(1100)));
        let (_, a) = step(ready(), Input::Tick, t0 + ms(1099), rd);
        assert!(a.is_empty());
        let (_, a) = step(ready(), Input::Tick, t0 + ms(1100), rd);
        assert_eq!(
            a,
            vec![Action::Promote {
                slot: 0,
                run: succ,
                by: ReadyBy::Message
            }]
        );
        let (next, a) = step(
            ready(),
            Input::Exited {
                slot: 0,
                exit: Exit::Code(1),
            },
            t0 + ms(400),
            rd,
        );
        assert!(next.is_none());
        assert_eq!(
            a[1],
            Action::Failed {
                slot: 0,
                reason: "the new instance exited (exit code 1) 700 ms before the end of min_ready (1000 ms)".into()
            }
        );
    }

    #[test]
    fn uptime_readiness_promotes_at_min_uptime() {
        let t0 = Instant::now();
        let uptime = Readiness {
            uptime: Some(ms(1000)),
            ..SIGNAL
        };
        let succ = run(t0, 9);
        let r = Rollout::begin(Trigger::Command, vec![0], 1, t0).0;
        let r = step(r, Input::Spawned { slot: 0, run: succ }, t0, uptime)
            .0
            .unwrap();
        assert_eq!(r.deadline(), Some(t0 + ms(1000)));
        let (r, a) = step(r, Input::Tick, t0 + ms(999), uptime);
        assert!(a.is_empty());
        let (_, a) = step(r.unwrap(), Input::Tick, t0 + ms(1000), uptime);
        assert_eq!(
            a,
            vec![Action::Promote {
                slot: 0,
                run: succ,
                by: ReadyBy::Uptime
            }]
        );
    }

    #[test]
    fn a_memory_replacement_covers_its_slot_only() {
        let t0 = Instant::now();
        let trigger = Trigger::Memory { slots: vec![2] };
        assert_eq!(trigger.slots(3), vec![2]);
        let (r, actions) = Rollout::begin(trigger, vec![2], 1, t0);
        assert_eq!(actions, vec![Action::Spawn { slot: 2 }]);
        assert!(r.covers(2) && !r.covers(0));
        let inputs = vec![
            (
                0,
                Input::Spawned {
                    slot: 2,
                    run: run(t0, 5),
                },
            ),
            (
                0,
                Input::Ready {
                    slot: 2,
                    by: ReadyBy::Message,
                },
            ),
            (0, Input::OldGone { slot: 2 }),
        ];
        let (actions, over) = drive(r, inputs, t0, SIGNAL);
        assert!(over);
        assert_eq!(actions.last(), Some(&Action::Done));
    }

    #[test]
    fn folded_triggers_merge() {
        let mem = |s: &[usize]| Trigger::Memory { slots: s.to_vec() };
        let table = [
            (mem(&[1]), mem(&[2]), mem(&[1, 2])),
            (mem(&[1]), mem(&[1]), mem(&[1])),
            (mem(&[1]), Trigger::Watch, Trigger::Watch),
            (Trigger::Command, mem(&[0]), Trigger::Command),
            (Trigger::Watch, Trigger::Signal, Trigger::Watch),
        ];
        for (a, b, want) in table {
            assert_eq!(a.clone().merge(b.clone()), want, "{a:?} + {b:?}");
        }
    }

    #[test]
    fn requests_during_a_reload_fold_into_exactly_one_more() {
        let mut q: Queue<u32> = Queue::default();
        assert_eq!(q.request(Trigger::Command, Some(1)), Some(Trigger::Command));
        assert_eq!(q.request(Trigger::Signal, Some(2)), None);
        assert_eq!(q.request(Trigger::Command, Some(3)), None);
        assert_eq!(q.request(Trigger::Command, None), None);
        let (done, next) = q.finish();
        assert_eq!(done, vec![1]);
        assert_eq!(next, Some(Trigger::Signal));
        assert!(q.in_flight());
        let (done, next) = q.finish();
        assert_eq!(done, vec![2, 3]);
        assert_eq!(next, None);
        assert!(!q.in_flight());
    }
}

//! The ready-gated rolling reload of one app, as a pure state machine, and the queue that
//! folds requests arriving during a reload into exactly one more.
//!
//! Per slot, one at a time: start a successor with the same instance id, wait until it is
//! ready, then promote it (the event loop stops the old instance with `kill_signal`, SIGKILL
//! after `kill_timeout`) and wait until the old one is gone, output drained; then the next
//! slot. A successor that exits or is not ready within `listen_timeout` is killed and the
//! reload ends as failed: the old instance, and every other, keeps serving.

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
    /// The slot being replaced (an index into the app's slots).
    pub slot: usize,
    /// The slots to replace after it, in order.
    pub rest: Vec<usize>,
    pub step: Step,
}

/// Where the rollout is within its current slot.
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
    /// The successor took the slot; the old instance is stopping.
    Draining,
}

/// What happens to the rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Spawned(Run),
    SpawnFailed(String),
    /// The successor is ready.
    Ready(ReadyBy),
    /// The successor exited.
    Exited(Exit),
    /// The old instance of the slot is gone (or there was none).
    OldGone,
    Tick,
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a successor for this slot.
    Spawn { slot: usize },
    /// The successor is ready: it becomes the slot's instance, the old one is stopped.
    Promote { slot: usize, run: Run, by: ReadyBy },
    /// Stop a successor that never got ready (gracefully: it may already be serving
    /// requests on the shared socket).
    StopSuccessor { run: Run },
    /// SIGKILL what a successor that exited left in its group.
    KillSuccessor { run: Run },
    /// The reload finished: every slot was replaced.
    Done,
    /// The reload ended early; every old instance still serving keeps serving.
    Failed { slot: usize, reason: String },
}

/// How the successor proves it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The longest wait for a signal.
    pub listen_timeout: Duration,
    /// `Some(min_uptime)` when staying up is the readiness (no signal expected).
    pub uptime: Option<Duration>,
}

impl Rollout {
    /// Starts a reload of these slots (at least one), in order.
    pub fn begin(trigger: Trigger, slots: Vec<usize>, now: Instant) -> (Rollout, Vec<Action>) {
        let mut slots = slots.into_iter();
        let first = slots.next().unwrap_or(0);
        (
            Rollout {
                trigger,
                started: now,
                slot: first,
                rest: slots.collect(),
                step: Step::Spawn,
            },
            vec![Action::Spawn { slot: first }],
        )
    }

    /// Whether this rollout will still replace slot `s` (or is replacing it).
    pub fn covers(&self, s: usize) -> bool {
        self.slot == s || self.rest.contains(&s)
    }

    /// When the rollout wants a `Tick`.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.step {
            Step::Starting {
                ready_at, deadline, ..
            } => Some(ready_at.map_or(*deadline, |r| r.min(*deadline))),
            _ => None,
        }
    }

    /// The successor's run, while there is one that has not taken its slot.
    pub fn successor(&self) -> Option<&Run> {
        match &self.step {
            Step::Starting { run, .. } => Some(run),
            _ => None,
        }
    }
}

/// The transition function: `None` means the rollout is over (see the actions for how).
pub fn step(
    mut r: Rollout,
    input: Input,
    now: Instant,
    readiness: Readiness,
) -> (Option<Rollout>, Vec<Action>) {
    let slot = r.slot;
    match (&r.step, input) {
        (Step::Spawn, Input::Spawned(run)) => {
            r.step = Step::Starting {
                run,
                ready_at: readiness.uptime.map(|u| now + u),
                deadline: now
                    + readiness
                        .listen_timeout
                        .max(readiness.uptime.unwrap_or_default()),
            };
            (Some(r), vec![])
        }
        (Step::Spawn, Input::SpawnFailed(why)) => (
            None,
            vec![Action::Failed {
                slot,
                reason: format!("the new instance could not start: {why}"),
            }],
        ),
        (Step::Starting { run, .. }, Input::Ready(by)) => {
            let run = *run;
            r.step = Step::Draining;
            (Some(r), vec![Action::Promote { slot, run, by }])
        }
        (
            Step::Starting {
                run,
                ready_at,
                deadline,
            },
            Input::Tick,
        ) => {
            let run = *run;
            if ready_at.is_some_and(|t| now >= t) {
                r.step = Step::Draining;
                return (
                    Some(r),
                    vec![Action::Promote {
                        slot,
                        run,
                        by: ReadyBy::Uptime,
                    }],
                );
            }
            if now >= *deadline {
                let reason = format!(
                    "the new instance was not ready within listen_timeout ({} ms)",
                    readiness.listen_timeout.as_millis()
                );
                return (
                    None,
                    vec![
                        Action::StopSuccessor { run },
                        Action::Failed { slot, reason },
                    ],
                );
            }
            (Some(r), vec![])
        }
        (Step::Starting { run, .. }, Input::Exited(exit)) => {
            let up = now.saturating_duration_since(run.started).as_millis();
            let run = *run;
            (
                None,
                vec![
                    Action::KillSuccessor { run },
                    Action::Failed {
                        slot,
                        reason: format!(
                            "the new instance exited ({exit}) after {up} ms, before it was ready"
                        ),
                    },
                ],
            )
        }
        (Step::Draining, Input::OldGone) => {
            if r.rest.is_empty() {
                return (None, vec![Action::Done]);
            }
            let next = r.rest.remove(0);
            r.slot = next;
            r.step = Step::Spawn;
            (Some(r), vec![Action::Spawn { slot: next }])
        }
        // Anything else changes nothing (a late ready message, a tick while draining...).
        _ => (Some(r), vec![]),
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
    };

    fn run(t0: Instant, pid: i32) -> Run {
        Run {
            pid,
            serial: pid as u64,
            started: t0,
        }
    }

    /// Drives a whole rollout of `slots` slots where every successor gets ready.
    #[test]
    fn every_slot_is_replaced_one_at_a_time() {
        let t0 = Instant::now();
        let (mut r, actions) = Rollout::begin(Trigger::Command, vec![0, 1, 2], t0);
        assert_eq!(actions, vec![Action::Spawn { slot: 0 }]);
        let mut log = Vec::new();
        for slot in 0..3 {
            let succ = run(t0, 100 + slot as i32);
            let (next, a) = step(r, Input::Spawned(succ), t0, SIGNAL);
            assert!(a.is_empty());
            r = next.unwrap();
            assert_eq!(r.successor(), Some(&succ));
            let (next, a) = step(r, Input::Ready(ReadyBy::Message), t0 + ms(50), SIGNAL);
            assert_eq!(
                a,
                vec![Action::Promote {
                    slot,
                    run: succ,
                    by: ReadyBy::Message
                }]
            );
            r = next.unwrap();
            let (next, a) = step(r, Input::OldGone, t0 + ms(60), SIGNAL);
            log.extend(a);
            match next {
                Some(n) => r = n,
                None => break,
            }
        }
        assert_eq!(
            log,
            vec![
                Action::Spawn { slot: 1 },
                Action::Spawn { slot: 2 },
                Action::Done
            ]
        );
    }

    #[test]
    fn failures_end_the_rollout_and_keep_the_old_instance() {
        let t0 = Instant::now();
        let succ = run(t0, 7);
        let starting = |r: Rollout| step(r, Input::Spawned(succ), t0, SIGNAL).0.unwrap();
        let fresh = || Rollout::begin(Trigger::Signal, vec![0, 1], t0).0;

        // (name, input, at ms, expected actions)
        let table: Vec<(&str, Input, u64, Vec<Action>)> = vec![
            (
                "exits before ready",
                Input::Exited(Exit::Code(1)),
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
            let (next, actions) = step(starting(fresh()), input, t0 + ms(at), SIGNAL);
            assert_eq!(actions, want, "{name}");
            assert_eq!(next.is_none(), !want.is_empty(), "{name}");
        }

        let (next, actions) = step(
            fresh(),
            Input::SpawnFailed("node: not found".into()),
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
    fn uptime_readiness_promotes_at_min_uptime() {
        let t0 = Instant::now();
        let uptime = Readiness {
            listen_timeout: ms(3000),
            uptime: Some(ms(1000)),
        };
        let succ = run(t0, 9);
        let r = step(
            Rollout::begin(Trigger::Command, vec![0], t0).0,
            Input::Spawned(succ),
            t0,
            uptime,
        )
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
        let (r, actions) = Rollout::begin(trigger, vec![2], t0);
        assert_eq!(actions, vec![Action::Spawn { slot: 2 }]);
        assert!(r.covers(2) && !r.covers(0));
        let succ = run(t0, 5);
        let r = step(r, Input::Spawned(succ), t0, SIGNAL).0.unwrap();
        let r = step(r, Input::Ready(ReadyBy::Message), t0, SIGNAL)
            .0
            .unwrap();
        assert_eq!(
            step(r, Input::OldGone, t0, SIGNAL),
            (None, vec![Action::Done])
        );
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

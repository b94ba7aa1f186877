//! The table tests of `rollout::step`.
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
            Input::Exited {
                slot: 0,
                exit: Exit::Code(1),
            },
            120,
            vec![
                Action::KillSuccessor { run: succ },
                Action::Failed {
                    slot: 0,
                    reason:
                        "the new instance exited (exit code 1) after 120 ms, before it was ready"
                            .into(),
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

/// 3 slots, one at a time: slot 0's successor takes its slot, slot 1's starts, then
/// `then`. The rollout must end failed at slot 0 with `reason`, slot 1's successor
/// stopped and slot 2 never started.
fn slot_0_successor_dies(then: Vec<(u64, Input)>, reason: &str) {
    let t0 = Instant::now();
    let (r, _) = Rollout::begin(Trigger::Command, (0..3).collect(), 1, t0);
    let mut inputs = vec![
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
    ];
    inputs.extend(then);
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
                reason: reason.into()
            }
        ]
    );
    assert!(!actions
        .iter()
        .any(|a| matches!(a, Action::Spawn { slot: 2 })));
}

#[test]
fn a_successor_that_took_its_slot_and_exits_fails_the_rollout_replacing_nothing_more() {
    // Slot 0's successor (it took the slot, its old instance drains) dies.
    slot_0_successor_dies(
        vec![(
            30,
            Input::Exited {
                slot: 0,
                exit: Exit::Code(3),
            },
        )],
        "the new instance exited (exit code 3) after it had taken its slot, before the reload was done",
    );
}

#[test]
fn a_successor_that_exits_after_its_old_instance_is_gone_still_fails_the_rollout() {
    // Slot 0's successor, alone in its slot now, dies while slot 1's still starts.
    slot_0_successor_dies(
        vec![
            (60, Input::OldGone { slot: 0 }),
            (
                90,
                Input::Exited {
                    slot: 0,
                    exit: Exit::Code(3),
                },
            ),
        ],
        "the new instance exited (exit code 3) after it had replaced its old one, before the reload was done",
    );
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
            reason:
                "the new instance exited (exit code 1) 700 ms before the end of min_ready (1000 ms)"
                    .into()
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
    let live = |s: &[usize]| Trigger::Liveness { slots: s.to_vec() };
    let table = [
        (mem(&[1]), mem(&[2]), mem(&[1, 2])),
        (live(&[0]), mem(&[2]), live(&[0, 2])),
        (mem(&[1]), live(&[1]), mem(&[1])),
        (live(&[1]), Trigger::Cron, Trigger::Cron),
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

#[test]
fn an_unhealthy_instance_fails_the_rollout_and_stops_the_other_successors() {
    let t0 = Instant::now();
    let readiness = Readiness {
        listen_timeout: ms(3000),
        uptime: None,
        min_ready: Duration::ZERO,
    };
    let (r, _) = Rollout::begin(Trigger::Command, vec![0, 1, 2], 2, t0);
    let (r, _) = step(
        r,
        Input::Spawned {
            slot: 0,
            run: run(t0, 10),
        },
        t0,
        readiness,
    );
    let (r, _) = step(
        r.unwrap(),
        Input::Spawned {
            slot: 1,
            run: run(t0, 11),
        },
        t0,
        readiness,
    );
    let (r, actions) = step(
        r.unwrap(),
        Input::Unhealthy {
            slot: 0,
            reason: "liveness".into(),
        },
        t0 + ms(10),
        readiness,
    );
    assert!(r.is_none());
    assert_eq!(
        actions,
        [
            Action::StopSuccessor { run: run(t0, 10) },
            Action::StopSuccessor { run: run(t0, 11) },
            Action::Failed {
                slot: 0,
                reason: "liveness".into()
            }
        ]
    );
}

#[test]
fn a_canary_takes_one_slot_holds_then_releases_it_and_the_rest_roll_at_max_surge() {
    let t0 = Instant::now();
    let rd = Readiness {
        listen_timeout: ms(3000),
        uptime: None,
        min_ready: Duration::ZERO,
    };
    let (r, actions) = Rollout::begin_with(Trigger::Command, vec![0, 1, 2], 2, Some(ms(1000)), t0);
    assert_eq!(
        actions,
        [Action::Spawn { slot: 0 }],
        "one slot first, whatever max_surge"
    );
    let by = ReadyBy::Message;
    let (all, over) = drive(
        r,
        vec![
            (
                0,
                Input::Spawned {
                    slot: 0,
                    run: run(t0, 10),
                },
            ),
            (100, Input::Ready { slot: 0, by }),
            // Held: nothing rolls before the hold ends.
            (600, Input::Tick),
            (1100, Input::Tick),
            (1200, Input::OldGone { slot: 0 }),
        ],
        t0,
        rd,
    );
    assert!(!over);
    assert_eq!(
        all,
        [
            Action::PromoteCanary {
                slot: 0,
                run: run(t0, 10),
                by
            },
            Action::Release { slot: 0 },
            Action::Spawn { slot: 1 },
            Action::Spawn { slot: 2 },
        ]
    );
}

#[test]
fn a_canary_that_exits_during_its_hold_fails_the_rollout_replacing_nothing_more() {
    let t0 = Instant::now();
    let rd = Readiness {
        listen_timeout: ms(3000),
        uptime: None,
        min_ready: Duration::ZERO,
    };
    let (r, _) = Rollout::begin_with(Trigger::Command, vec![0, 1], 1, Some(ms(5000)), t0);
    let (all, over) = drive(
        r,
        vec![
            (
                0,
                Input::Spawned {
                    slot: 0,
                    run: run(t0, 10),
                },
            ),
            (
                100,
                Input::Ready {
                    slot: 0,
                    by: ReadyBy::Message,
                },
            ),
            (
                2000,
                Input::Exited {
                    slot: 0,
                    exit: Exit::Code(1),
                },
            ),
        ],
        t0,
        rd,
    );
    assert!(over);
    assert!(
        matches!(all.last(), Some(Action::Failed { slot: 0, .. })),
        "{all:?}"
    );
    assert!(!all
        .iter()
        .any(|a| matches!(a, Action::Spawn { slot: 1 } | Action::Release { .. })));
}

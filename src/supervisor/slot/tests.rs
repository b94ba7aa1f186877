//! The table tests of `slot::step`.
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn settings(wait_ready: bool) -> Settings {
    Settings {
        policy: Policy {
            autorestart: true,
            max_restarts: 2,
            min_uptime: ms(1000),
            restart_delay: ms(0),
            exp_backoff: None,
            stop_exit_codes: vec![],
        },
        wait_ready,
        expect_listen: false,
        ready_pattern: false,
        listen_timeout: ms(3000),
        kill_timeout: ms(1600),
        kill_signal: Signal::SIGINT,
        drain_delay: ms(100),
        probe: false,
    }
}

struct Case {
    name: &'static str,
    wait_ready: bool,
    phase: fn(Instant, Run) -> Phase,
    input: fn(Instant, Run) -> Input,
    /// Milliseconds after `t0` at which the input arrives.
    at: u64,
    want: fn(Instant, Run) -> Phase,
    actions: Vec<Action>,
}

#[test]
fn transitions() {
    let t0 = Instant::now();
    let run = Run {
        pid: 42,
        serial: 1,
        started: t0,
    };
    let cases = vec![
        Case {
            name: "pending spawns when due",
            wait_ready: false,
            phase: |t0, _| Phase::Pending { at: t0 },
            input: |_, _| Input::Tick { group_alive: false },
            at: 0,
            want: |t0, _| Phase::Pending { at: t0 },
            actions: vec![Action::Spawn],
        },
        Case {
            name: "pending waits for its time",
            wait_ready: false,
            phase: |t0, _| Phase::Pending { at: t0 + ms(500) },
            input: |_, _| Input::Tick { group_alive: false },
            at: 100,
            want: |t0, _| Phase::Pending { at: t0 + ms(500) },
            actions: vec![],
        },
        Case {
            name: "spawned without wait_ready waits min_uptime",
            wait_ready: false,
            phase: |t0, _| Phase::Pending { at: t0 },
            input: |_, run| Input::Spawned(run),
            at: 0,
            want: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(1000)),
            },
            actions: vec![],
        },
        Case {
            name: "spawned with wait_ready waits listen_timeout",
            wait_ready: true,
            phase: |t0, _| Phase::Pending { at: t0 },
            input: |_, run| Input::Spawned(run),
            at: 0,
            want: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(3000)),
            },
            actions: vec![],
        },
        Case {
            name: "ready message makes it online",
            wait_ready: true,
            phase: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(3000)),
            },
            input: |_, _| Input::Ready(ReadyBy::Message),
            at: 200,
            want: |_, run| Phase::Online {
                run,
                ready_by: ReadyBy::Message,
            },
            actions: vec![],
        },
        Case {
            name: "ready message is ignored without wait_ready",
            wait_ready: false,
            phase: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(1000)),
            },
            input: |_, _| Input::Ready(ReadyBy::Message),
            at: 200,
            want: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(1000)),
            },
            actions: vec![],
        },
        Case {
            name: "READY=1 counts without wait_ready",
            wait_ready: false,
            phase: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(1000)),
            },
            input: |_, _| Input::Ready(ReadyBy::Notify),
            at: 200,
            want: |_, run| Phase::Online {
                run,
                ready_by: ReadyBy::Notify,
            },
            actions: vec![],
        },
        Case {
            name: "listening counts without wait_ready",
            wait_ready: false,
            phase: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(1000)),
            },
            input: |_, _| Input::Ready(ReadyBy::Listen),
            at: 200,
            want: |_, run| Phase::Online {
                run,
                ready_by: ReadyBy::Listen,
            },
            actions: vec![],
        },
        Case {
            name: "listening does not count with wait_ready",
            wait_ready: true,
            phase: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(3000)),
            },
            input: |_, _| Input::Ready(ReadyBy::Listen),
            at: 200,
            want: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(3000)),
            },
            actions: vec![],
        },
        Case {
            name: "min_uptime passed makes it online",
            wait_ready: false,
            phase: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(1000)),
            },
            input: |_, _| Input::Tick { group_alive: true },
            at: 1000,
            want: |_, run| Phase::Online {
                run,
                ready_by: ReadyBy::Uptime,
            },
            actions: vec![],
        },
        Case {
            name: "listen_timeout passed is reported once, still starting",
            wait_ready: true,
            phase: |t0, run| Phase::Starting {
                run,
                deadline: Some(t0 + ms(3000)),
            },
            input: |_, _| Input::Tick { group_alive: true },
            at: 3000,
            want: |_, run| Phase::Starting {
                run,
                deadline: None,
            },
            actions: vec![Action::NotReadyInTime(
                "no ready message after 3000 ms (listen_timeout)".into(),
            )],
        },
        Case {
            name: "crash after a long run restarts at once and kills leftovers",
            wait_ready: false,
            phase: |_, run| Phase::Online {
                run,
                ready_by: ReadyBy::Uptime,
            },
            input: |_, _| Input::Exited(Exit::Code(1)),
            at: 5000,
            want: |t0, _| Phase::Pending { at: t0 + ms(5000) },
            actions: vec![
                Action::Kill,
                Action::Say("exit code 1 after 5000 ms; restarting".into()),
            ],
        },
        Case {
            name: "drain takes an online instance out, nothing sent yet",
            wait_ready: false,
            phase: |_, run| Phase::Online {
                run,
                ready_by: ReadyBy::Uptime,
            },
            input: |_, _| Input::Drain,
            at: 10,
            want: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(10),
                signal_at: None,
                give_up_at: t0 + ms(1610),
                since: t0 + ms(10),
            },
            actions: vec![],
        },
        Case {
            name: "draining: a queue still full is looked at again soon",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0,
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::Tick { group_alive: true },
            at: 20,
            want: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(20) + QUEUE_POLL,
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            actions: vec![],
        },
        Case {
            name: "draining: an empty queue with a request not read yet arms drain_delay",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0,
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::QueueEmpty { settled: false },
            at: 30,
            want: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0,
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            actions: vec![],
        },
        Case {
            name: "draining: before drain_delay nothing is sent; its connections are looked at again soon",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0,
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::Tick { group_alive: true },
            at: 100,
            want: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(100) + QUEUE_POLL,
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            actions: vec![],
        },
        Case {
            name: "draining: an empty queue and every request read: asked to stop at once",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(60),
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::QueueEmpty { settled: true },
            at: 60,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1660),
                killed: false,
                exit: None,
                poll_at: None,
            },
            actions: vec![Action::AskToStop],
        },
        Case {
            name: "draining: every request read, but replaced less than KEEP_REPLACED ago: kept, drain_delay armed",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(30),
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::QueueEmpty { settled: true },
            at: 30,
            want: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(30),
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            actions: vec![],
        },
        Case {
            name: "draining: the last request read before drain_delay: asked to stop then",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(70),
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::QueueEmpty { settled: true },
            at: 70,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1670),
                killed: false,
                exit: None,
                poll_at: None,
            },
            actions: vec![Action::AskToStop],
        },
        Case {
            name: "draining: a request still not read changes nothing once drain_delay runs",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(40),
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::QueueEmpty { settled: false },
            at: 40,
            want: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(40),
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            actions: vec![],
        },
        Case {
            name: "draining: after drain_delay it is asked to stop, kill_timeout armed",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0,
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::Tick { group_alive: true },
            at: 130,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1730),
                killed: false,
                exit: None,
                poll_at: None,
            },
            actions: vec![Action::AskToStop],
        },
        Case {
            name: "draining: a queue that never empties gives up at kill_timeout",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0 + ms(1595),
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::Tick { group_alive: true },
            at: 1600,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(3200),
                killed: false,
                exit: None,
                poll_at: None,
            },
            actions: vec![
                Action::AskToStop,
                Action::Say("still had connections waiting to be accepted 1600 ms (kill_timeout) after it was replaced; asking it to stop anyway".into()),
            ],
        },
        Case {
            name: "draining: an exit kills what it left and waits for the group",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0,
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::Exited(Exit::Code(0)),
            at: 40,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1640),
                killed: false,
                exit: Some(Exit::Code(0)),
                poll_at: Some(t0 + ms(40)),
            },
            actions: vec![Action::Kill],
        },
        Case {
            name: "draining: its successor died, it serves again as it was ready",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Message),
                check_at: t0,
                signal_at: Some(t0 + ms(130)),
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::Resume,
            at: 60,
            want: |_, run| Phase::Online {
                run,
                ready_by: ReadyBy::Message,
            },
            actions: vec![],
        },
        Case {
            name: "draining: one replaced before it was ready does not serve again",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: None,
                check_at: t0,
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::Resume,
            at: 60,
            want: |t0, run| Phase::Draining {
                run,
                ready_by: None,
                check_at: t0,
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            actions: vec![],
        },
        Case {
            name: "stopping: asked to stop already, it cannot serve again",
            wait_ready: false,
            phase: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: None,
                poll_at: None,
            },
            input: |_, _| Input::Resume,
            at: 60,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: None,
                poll_at: None,
            },
            actions: vec![],
        },
        Case {
            name: "draining: hotrun stopping asks it to stop at once",
            wait_ready: false,
            phase: |t0, run| Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Uptime),
                check_at: t0,
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
            input: |_, _| Input::Stop,
            at: 50,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1650),
                killed: false,
                exit: None,
                poll_at: None,
            },
            actions: vec![Action::AskToStop],
        },
        Case {
            name: "stop asks the group to stop and arms kill_timeout",
            wait_ready: false,
            phase: |_, run| Phase::Online {
                run,
                ready_by: ReadyBy::Uptime,
            },
            input: |_, _| Input::Stop,
            at: 0,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: None,
                poll_at: None,
            },
            actions: vec![Action::AskToStop],
        },
        Case {
            name: "stop of a pending slot stops it",
            wait_ready: false,
            phase: |t0, _| Phase::Pending { at: t0 + ms(500) },
            input: |_, _| Input::Stop,
            at: 0,
            want: |_, _| Phase::Stopped { exit: None },
            actions: vec![],
        },
        Case {
            name: "stopping: leader exit is remembered",
            wait_ready: false,
            phase: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: None,
                poll_at: None,
            },
            input: |_, _| Input::Exited(Exit::Code(0)),
            at: 100,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: Some(Exit::Code(0)),
                poll_at: Some(t0 + ms(100)),
            },
            actions: vec![],
        },
        Case {
            name: "stopping: leader gone and group empty is stopped",
            wait_ready: false,
            phase: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: Some(Exit::Code(0)),
                poll_at: Some(t0 + ms(100)),
            },
            input: |_, _| Input::Tick { group_alive: false },
            at: 200,
            want: |_, _| Phase::Stopped {
                exit: Some(Exit::Code(0)),
            },
            actions: vec![],
        },
        Case {
            name: "stopping: kill_timeout passed sends SIGKILL",
            wait_ready: false,
            phase: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: None,
                poll_at: None,
            },
            input: |_, _| Input::Tick { group_alive: true },
            at: 1600,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: true,
                exit: None,
                poll_at: Some(t0 + ms(1700)),
            },
            actions: vec![
                Action::Kill,
                Action::StopOverdue("still running 1600 ms after SIGINT".into()),
            ],
        },
        Case {
            name: "stopping: leader gone but group alive looks again later",
            wait_ready: false,
            phase: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: Some(Exit::Code(0)),
                poll_at: Some(t0 + ms(100)),
            },
            input: |_, _| Input::Tick { group_alive: true },
            at: 100,
            want: |t0, run| Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: Some(Exit::Code(0)),
                poll_at: Some(t0 + ms(200)),
            },
            actions: vec![],
        },
        Case {
            name: "stopped ignores stop",
            wait_ready: false,
            phase: |_, _| Phase::Stopped { exit: None },
            input: |_, _| Input::Stop,
            at: 0,
            want: |_, _| Phase::Stopped { exit: None },
            actions: vec![],
        },
    ];
    for case in cases {
        let s = settings(case.wait_ready);
        let mut history = History::default();
        let (phase, actions) = step(
            (case.phase)(t0, run),
            (case.input)(t0, run),
            t0 + ms(case.at),
            &s,
            &mut history,
        );
        assert_eq!(phase, (case.want)(t0, run), "{}", case.name);
        assert_eq!(actions, case.actions, "{}", case.name);
    }
}

#[test]
fn crash_loop_ends_errored_after_max_restarts() {
    let t0 = Instant::now();
    let s = settings(false);
    let mut history = History::default();
    let mut phase = Phase::Pending { at: t0 };
    let mut gave_up = None;
    for n in 0..10u64 {
        let now = t0 + ms(n * 10);
        let run = Run {
            pid: 100 + n as i32,
            serial: n,
            started: now,
        };
        phase = step(phase, Input::Spawned(run), now, &s, &mut history).0;
        let (next, actions) = step(
            phase,
            Input::Exited(Exit::Code(1)),
            now + ms(5),
            &s,
            &mut history,
        );
        phase = next;
        if let Some(Action::GaveUp(msg)) = actions.last() {
            gave_up = Some((n, msg.clone()));
            break;
        }
    }
    let (n, msg) = gave_up.expect("gave up");
    assert_eq!(n, 1, "max_restarts 2 = gave up at the second short run");
    assert!(matches!(
        phase,
        Phase::Errored {
            exit: Exit::Code(1)
        }
    ));
    assert!(
        msg.starts_with("errored: 2 runs in a row shorter than min_uptime (1000 ms)"),
        "{msg}"
    );
}

#[test]
fn with_a_readiness_probe_only_its_pass_makes_an_instance_ready() {
    let t0 = Instant::now();
    let run = Run {
        pid: 7,
        serial: 1,
        started: t0,
    };
    let mut probed = settings(false);
    probed.probe = true;
    let starting = || Phase::Starting {
        run,
        deadline: Some(t0 + ms(3000)),
    };
    let mut history = History::default();
    // Not ready by uptime: at listen_timeout it is said, and still waited for.
    let (phase, actions) = step(
        starting(),
        Input::Tick { group_alive: true },
        t0 + ms(3000),
        &probed,
        &mut history,
    );
    assert_eq!(
        phase,
        Phase::Starting {
            run,
            deadline: None
        }
    );
    assert_eq!(
        actions,
        [Action::NotReadyInTime(
            "not ready after 3000 ms (listen_timeout)".into()
        )]
    );
    // The probe's pass counts; uptime's never does.
    let (phase, _) = step(
        starting(),
        Input::Ready(ReadyBy::Probe),
        t0 + ms(10),
        &probed,
        &mut history,
    );
    assert_eq!(
        phase,
        Phase::Online {
            run,
            ready_by: ReadyBy::Probe
        }
    );
    assert!(!ReadyBy::Probe.counts(&settings(false)));
    assert!(!ReadyBy::Uptime.counts(&probed));
}

#[test]
fn a_parked_instance_serves_again_drains_stops_or_exits() {
    let t0 = Instant::now();
    let run = Run {
        pid: 7,
        serial: 1,
        started: t0,
    };
    let s = settings(true);
    let online = Phase::Online {
        run,
        ready_by: ReadyBy::Message,
    };
    let parked = Phase::Parked {
        run,
        ready_by: ReadyBy::Message,
    };
    let mut h = History::default();
    let table: [(Phase, Input, Phase); 5] = [
        (online.clone(), Input::Park, parked.clone()),
        (parked.clone(), Input::Resume, online.clone()),
        (
            parked.clone(),
            Input::Drain,
            Phase::Draining {
                run,
                ready_by: Some(ReadyBy::Message),
                check_at: t0,
                signal_at: None,
                give_up_at: t0 + ms(1600),
                since: t0,
            },
        ),
        (
            parked.clone(),
            Input::Stop,
            Phase::Stopping {
                run,
                kill_at: t0 + ms(1600),
                killed: false,
                exit: None,
                poll_at: None,
            },
        ),
        // Time alone changes nothing: it waits for the canary's verdict.
        (
            parked.clone(),
            Input::Tick { group_alive: true },
            parked.clone(),
        ),
    ];
    for (from, input, want) in table {
        let (got, _) = step(from.clone(), input, t0, &s, &mut h);
        assert_eq!(got, want, "{from:?} + {input:?}");
    }
    assert_eq!(parked.deadline(), None);
    let (exited, actions) = step(parked, Input::Exited(Exit::Code(1)), t0, &s, &mut h);
    assert!(matches!(
        exited,
        Phase::Stopping {
            exit: Some(Exit::Code(1)),
            ..
        }
    ));
    assert_eq!(actions, [Action::Kill]);
}

#[test]
fn start_and_give_up_act_on_a_slot_with_no_process_only() {
    let t0 = Instant::now();
    let run = Run {
        pid: 7,
        serial: 1,
        started: t0,
    };
    let s = settings(true);
    let online = Phase::Online {
        run,
        ready_by: ReadyBy::Message,
    };
    let gone = [
        Phase::Pending { at: t0 + ms(5000) },
        Phase::Stopped { exit: None },
        Phase::Errored {
            exit: Exit::Code(1),
        },
    ];
    for from in gone {
        let mut h = History {
            restarts: 3,
            ..Default::default()
        };
        let (got, _) = step(from.clone(), Input::Start, t0 + ms(10), &s, &mut h);
        assert_eq!(got, Phase::Pending { at: t0 + ms(10) }, "{from:?}");
        assert_eq!(h.restarts, 0, "a fresh start forgets its restarts");
        let (got, _) = step(from, Input::GiveUp(Exit::Code(1)), t0, &s, &mut h);
        assert_eq!(
            got,
            Phase::Errored {
                exit: Exit::Code(1)
            }
        );
    }
    // A running instance is left alone by both.
    let mut h = History::default();
    for input in [Input::Start, Input::GiveUp(Exit::Code(1))] {
        let (got, actions) = step(online.clone(), input, t0, &s, &mut h);
        assert_eq!((got, actions), (online.clone(), vec![]));
    }
}

#[test]
fn a_run_that_never_held_its_slot_stops_as_any_instance() {
    let t0 = Instant::now();
    let run = Run {
        pid: 7,
        serial: 1,
        started: t0,
    };
    let s = settings(true);
    let starting = Phase::Starting {
        run,
        deadline: None,
    };
    let mut h = History::default();
    assert_eq!(
        stop_run(run, t0, &s),
        step(starting, Input::Stop, t0, &s, &mut h)
    );
    assert!(matches!(
        killed_run(run, t0),
        Phase::Stopping { killed: true, poll_at: Some(p), .. } if p == t0
    ));
}

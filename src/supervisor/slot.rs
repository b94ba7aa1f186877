//! One instance slot (`web|2`): the lifecycle of the process in it, as an enum whose
//! variants carry their own data, and a pure transition function `step` that turns an
//! input into the next phase plus the actions the event loop must carry out. No I/O here;
//! the tests at the bottom are tables.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::restart::{decide, Decision, History, Policy};
use crate::control::protocol::InstanceState;
use crate::process::reaper::Exit;

/// How an instance showed it was ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyBy {
    /// `process.send('ready')` (`wait_ready: true`).
    Message,
    /// `READY=1` on `NOTIFY_SOCKET` (systemd's protocol).
    Notify,
    /// It listens on its shared port (reported by hotrun's preload module).
    Listen,
    /// It printed a line that matches `ready_pattern`.
    Pattern,
    /// It stayed up `min_uptime` (no signal expected from it).
    Uptime,
    /// Its `readiness_probe` passed (and its own signal came, when it gives one).
    Probe,
}

impl ReadyBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyBy::Message => "message",
            ReadyBy::Notify => "notify",
            ReadyBy::Listen => "listen",
            ReadyBy::Pattern => "pattern",
            ReadyBy::Uptime => "uptime",
            ReadyBy::Probe => "probe",
        }
    }

    /// The signal named as `as_str` names it.
    pub fn parse(name: &str) -> Option<ReadyBy> {
        [
            ReadyBy::Message,
            ReadyBy::Notify,
            ReadyBy::Listen,
            ReadyBy::Pattern,
            ReadyBy::Uptime,
            ReadyBy::Probe,
        ]
        .into_iter()
        .find(|r| r.as_str() == name)
    }

    /// Whether this signal counts: READY=1 always; with `wait_ready` the ready message;
    /// with `ready_pattern` a matching line; otherwise listening on the shared port; with
    /// a `readiness_probe`, its pass (the loop holds the others until it passes).
    pub fn counts(self, settings: &Settings) -> bool {
        match self {
            ReadyBy::Probe => settings.probe,
            ReadyBy::Notify => true,
            ReadyBy::Message => settings.wait_ready,
            ReadyBy::Pattern => settings.ready_pattern,
            ReadyBy::Listen => !settings.wait_ready && !settings.ready_pattern,
            ReadyBy::Uptime => false,
        }
    }
}

/// One process started in the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Also its process group id.
    pub pid: i32,
    /// Unique per spawn, never reused (pids are).
    pub serial: u64,
    pub started: Instant,
}

/// Where the slot is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// To be started at `at` (first start, or a restart after its delay).
    Pending { at: Instant },
    /// Running, not ready yet. `ready_by` is when readiness is decided: the end of
    /// `min_uptime`, or the `listen_timeout` for a ready message (then `None` once it has
    /// passed and been reported).
    Starting { run: Run, deadline: Option<Instant> },
    /// Running and ready.
    Online { run: Run, ready_by: ReadyBy },
    /// Replaced: its socket gets no new connection; once its accept queue is empty (seen
    /// at a check, every `check_at`), it is asked to stop as soon as every connection it
    /// accepted has had its request read, and at the latest at `signal_at`, after
    /// `drain_delay`; at `give_up_at` (`kill_timeout`) it is asked to stop anyway.
    Draining {
        run: Run,
        /// How it had shown it was ready (`None`: replaced before it was), kept so that it
        /// can serve again (`Resume`) if its successor dies before it is asked to stop.
        ready_by: Option<ReadyBy>,
        check_at: Instant,
        signal_at: Option<Instant>,
        give_up_at: Instant,
        /// When it was replaced: it is kept at least `KEEP_REPLACED` from then.
        since: Instant,
    },
    /// Replaced by a canary and held, running, out of the kernel's choice and not asked to
    /// stop, until the canary's `hold` ends: then it drains (`Drain`), or, when the canary
    /// fails, it serves again (`Resume`).
    Parked { run: Run, ready_by: ReadyBy },
    /// Asked to stop; SIGKILL to its group at `kill_at`. The slot is stopped once the
    /// leader has exited and its group is empty; once the leader is gone (or killed) the
    /// group is checked again at `poll_at`.
    Stopping {
        run: Run,
        kill_at: Instant,
        killed: bool,
        exit: Option<Exit>,
        poll_at: Option<Instant>,
    },
    /// Gave up after `max_restarts` short runs in a row.
    Errored { exit: Exit },
    /// Not running and not to be restarted.
    Stopped { exit: Option<Exit> },
}

/// What happens to the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The event loop started a process for a `Spawn` action.
    Spawned(Run),
    /// The process could not be started at all (e.g. the interpreter is missing).
    SpawnFailed,
    /// The instance gave a readiness signal.
    Ready(ReadyBy),
    /// The slot's process (the group leader) exited.
    Exited(Exit),
    /// Stop gracefully (hotrun is stopping).
    Stop,
    /// Stop after draining: its socket is out of the kernel's choice already.
    Drain,
    /// The event loop saw the draining instance's accept queue empty; `settled`: and
    /// every connection it accepted has had its request read (`sockets::diag`).
    QueueEmpty { settled: bool },
    /// Serve again: the successor that replaced it died before it was asked to stop.
    Resume,
    /// Replaced by a canary: held until the canary passes or fails (see `Parked`).
    Park,
    /// Start afresh (its build is done, it is back in the file or scaled back, `hotrun
    /// restart`): a slot with no process starts now, its restart history forgotten.
    Start,
    /// It cannot start (its first build failed): a slot with no process is errored.
    GiveUp(Exit),
    /// Time passed; `group_alive` says whether the slot's process group still has members.
    Tick { group_alive: bool },
}

/// What the event loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a process; answer with `Spawned` or `SpawnFailed`.
    Spawn,
    /// Ask the group to stop (`kill_signal`, or the IPC 'shutdown' message when the app
    /// wants that).
    AskToStop,
    /// SIGKILL to the whole group.
    Kill,
    /// A line for the user about this slot.
    Say(String),
    /// Not ready within `listen_timeout` (what it lacks and when), still waited for.
    NotReadyInTime(String),
    /// Still running `kill_timeout` after it was asked to stop (said with the `Kill`).
    StopOverdue(String),
    /// The slot gave up (errored); the loop says so once per app.
    GaveUp(String),
}

/// The slot's settings, taken from the app's plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub policy: Policy,
    pub wait_ready: bool,
    /// A listening report is expected (the app listens on a port hotrun shares).
    pub expect_listen: bool,
    /// `ready_pattern` is set: an output line says when the instance is ready.
    pub ready_pattern: bool,
    pub listen_timeout: Duration,
    pub kill_timeout: Duration,
    pub kill_signal: Signal,
    /// How long a drained instance keeps serving before `kill_signal` (`drain_delay`).
    pub drain_delay: Duration,
    /// A `readiness_probe` must pass: readiness never comes from uptime alone.
    pub probe: bool,
}

impl Settings {
    /// Readiness comes from a signal (not from uptime).
    pub fn waits_for_signal(&self) -> bool {
        self.gives_signal() || self.probe
    }

    /// The instance itself says when it is ready (a message, listening, a line).
    pub fn gives_signal(&self) -> bool {
        self.wait_ready || self.expect_listen || self.ready_pattern
    }
}

/// How often a stopping group is checked once its leader is gone or killed (PM2's
/// `kill_retry_time`).
const POLL: Duration = Duration::from_millis(100);

/// How long a replaced instance is kept at least, even once every request it accepted
/// has been read: a successor that exits this soon after it took the slot (a version
/// that says ready and crashes at once) finds it still there, and it serves again.
pub const KEEP_REPLACED: Duration = Duration::from_millis(50);

/// How often a draining instance's accept queue, then its connections, are looked at.
pub const QUEUE_POLL: Duration = Duration::from_millis(5);

impl Phase {
    /// The instant at which `step` wants a `Tick`, if any.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Phase::Pending { at } => Some(*at),
            Phase::Starting { deadline, .. } => *deadline,
            Phase::Draining {
                check_at,
                signal_at,
                give_up_at,
                ..
            } => Some(
                signal_at
                    .map_or(*check_at, |at| at.min(*check_at))
                    .min(*give_up_at),
            ),
            Phase::Stopping {
                kill_at,
                killed,
                poll_at,
                ..
            } => match (killed, poll_at) {
                (false, Some(p)) => Some((*kill_at).min(*p)),
                (false, None) => Some(*kill_at),
                (true, p) => *p,
            },
            _ => None,
        }
    }

    /// The process running in the slot, if any.
    pub fn run(&self) -> Option<&Run> {
        match self {
            Phase::Starting { run, .. }
            | Phase::Online { run, .. }
            | Phase::Draining { run, .. }
            | Phase::Parked { run, .. }
            | Phase::Stopping { run, .. } => Some(run),
            _ => None,
        }
    }

    /// Done for good: nothing runs and nothing will.
    pub fn is_final(&self) -> bool {
        matches!(self, Phase::Errored { .. } | Phase::Stopped { .. })
    }

    /// The state `status` shows.
    pub fn state(&self) -> InstanceState {
        match self {
            Phase::Pending { .. } | Phase::Starting { .. } => InstanceState::Starting,
            Phase::Online { .. } => InstanceState::Online,
            Phase::Draining { .. } | Phase::Parked { .. } => InstanceState::Draining,
            Phase::Stopping { .. } => InstanceState::Stopping,
            Phase::Errored { .. } => InstanceState::Errored,
            Phase::Stopped { .. } => InstanceState::Stopped,
        }
    }
}

/// The transition function.
pub fn step(
    phase: Phase,
    input: Input,
    now: Instant,
    settings: &Settings,
    history: &mut History,
) -> (Phase, Vec<Action>) {
    use Action::*;
    use Phase::*;
    match (phase, input) {
        (Pending { .. } | Errored { .. } | Stopped { .. }, Input::Start) => {
            *history = History::default();
            (Pending { at: now }, vec![])
        }
        (Pending { .. } | Errored { .. } | Stopped { .. }, Input::GiveUp(exit)) => {
            *history = History::default();
            (Errored { exit }, vec![])
        }
        (Pending { at }, Input::Tick { .. }) if now >= at => (Pending { at }, vec![Spawn]),
        (Pending { .. }, Input::Spawned(run)) => {
            let deadline = if settings.waits_for_signal() {
                now + settings.listen_timeout
            } else {
                now + settings.policy.min_uptime
            };
            (
                Starting {
                    run,
                    deadline: Some(deadline),
                },
                vec![],
            )
        }
        (Pending { .. }, Input::SpawnFailed) => {
            after_exit(Exit::Code(127), Duration::ZERO, now, settings, history)
        }
        (Pending { .. }, Input::Stop | Input::Drain) => (Stopped { exit: None }, vec![]),

        (Starting { run, .. }, Input::Ready(by)) if by.counts(settings) => {
            (Online { run, ready_by: by }, vec![])
        }
        (
            Starting {
                run,
                deadline: Some(d),
            },
            Input::Tick { .. },
        ) if now >= d => {
            if settings.waits_for_signal() {
                let what = if settings.probe {
                    "not ready"
                } else if settings.wait_ready {
                    "no ready message"
                } else if settings.ready_pattern {
                    "no line matching ready_pattern"
                } else {
                    "not listening"
                };
                let msg = format!(
                    "{what} after {} ms (listen_timeout)",
                    settings.listen_timeout.as_millis()
                );
                (
                    Starting {
                        run,
                        deadline: None,
                    },
                    vec![NotReadyInTime(msg)],
                )
            } else {
                (
                    Online {
                        run,
                        ready_by: ReadyBy::Uptime,
                    },
                    vec![],
                )
            }
        }

        (Starting { run, .. } | Online { run, .. }, Input::Exited(exit)) => {
            let (next, mut actions) = after_exit(
                exit,
                now.saturating_duration_since(run.started),
                now,
                settings,
                history,
            );
            // Whatever the leader left in its group goes with it.
            actions.insert(0, Kill);
            (next, actions)
        }
        (
            Starting { run, .. } | Online { run, .. } | Draining { run, .. } | Parked { run, .. },
            Input::Stop,
        ) => ask_to_stop(run, now, settings, vec![]),
        (Online { run, ready_by }, Input::Park) => (Parked { run, ready_by }, vec![]),
        (Parked { run, ready_by }, Input::Resume) => (Online { run, ready_by }, vec![]),
        (Parked { run, ready_by } | Online { run, ready_by }, Input::Drain) => {
            (draining(run, Some(ready_by), now, settings), vec![])
        }
        // Not ready when it was replaced: nothing to go back to; it drains.
        (Starting { run, .. }, Input::Drain | Input::Park) => {
            (draining(run, None, now, settings), vec![])
        }
        (
            Draining {
                run,
                ready_by: Some(ready_by),
                ..
            },
            Input::Resume,
        ) => (Online { run, ready_by }, vec![]),
        (Draining { run, since, .. }, Input::QueueEmpty { settled: true })
            if now >= since + KEEP_REPLACED =>
        {
            ask_to_stop(run, now, settings, vec![])
        }
        (
            Draining {
                run,
                ready_by,
                check_at,
                signal_at: None,
                give_up_at,
                since,
            },
            Input::QueueEmpty { .. },
        ) => (
            Draining {
                run,
                ready_by,
                check_at,
                signal_at: Some(now + settings.drain_delay),
                give_up_at,
                since,
            },
            vec![],
        ),
        (
            Draining {
                run,
                signal_at: Some(at),
                ..
            },
            Input::Tick { .. },
        ) if now >= at => ask_to_stop(run, now, settings, vec![]),
        (
            Draining {
                run, give_up_at, ..
            },
            Input::Tick { .. },
        ) if now >= give_up_at => {
            let msg = format!(
                "still had connections waiting to be accepted {} ms (kill_timeout) after it was replaced; asking it to stop anyway",
                settings.kill_timeout.as_millis()
            );
            ask_to_stop(run, now, settings, vec![Say(msg)])
        }
        // Looked at again soon: its queue, or once empty, its connections.
        (
            Draining {
                run,
                ready_by,
                signal_at,
                give_up_at,
                since,
                ..
            },
            Input::Tick { .. },
        ) => (
            Draining {
                run,
                ready_by,
                check_at: now + QUEUE_POLL,
                signal_at,
                give_up_at,
                since,
            },
            vec![],
        ),
        // It went by itself while draining: what it left in its group goes with it.
        (Draining { run, .. } | Parked { run, .. }, Input::Exited(exit)) => (
            Stopping {
                run,
                kill_at: now + settings.kill_timeout,
                killed: false,
                exit: Some(exit),
                poll_at: Some(now),
            },
            vec![Kill],
        ),

        // The leader is gone: check its group at once.
        (
            Stopping {
                run,
                kill_at,
                killed,
                ..
            },
            Input::Exited(exit),
        ) => (
            Stopping {
                run,
                kill_at,
                killed,
                exit: Some(exit),
                poll_at: Some(now),
            },
            vec![],
        ),
        // The group is empty: its leader is reaped too (a zombie still counts as a member).
        (Stopping { exit, .. }, Input::Tick { group_alive: false }) => (Stopped { exit }, vec![]),
        (
            Stopping {
                run,
                kill_at,
                killed: false,
                exit,
                ..
            },
            Input::Tick { group_alive: true },
        ) if now >= kill_at => {
            let msg = format!(
                "still running {} ms after {}",
                settings.kill_timeout.as_millis(),
                settings.kill_signal.as_str()
            );
            (
                Stopping {
                    run,
                    kill_at,
                    killed: true,
                    exit,
                    poll_at: Some(now + POLL),
                },
                vec![Kill, StopOverdue(msg)],
            )
        }
        // Killed, or the leader gone but not its whole group: look again soon.
        (
            Stopping {
                run,
                kill_at,
                killed,
                exit,
                poll_at: Some(_),
            },
            Input::Tick { .. },
        ) => (
            Stopping {
                run,
                kill_at,
                killed,
                exit,
                poll_at: Some(now + POLL),
            },
            vec![],
        ),

        // Anything else changes nothing: a late ready message, a Stop of a stopped slot...
        (phase, _) => (phase, vec![]),
    }
}

/// `kill_signal` now, SIGKILL at `kill_timeout`; `actions` go after the ask.
/// Replaced: out of the kernel's choice from now, its queue watched (see `Draining`).
fn draining(run: Run, ready_by: Option<ReadyBy>, now: Instant, settings: &Settings) -> Phase {
    Phase::Draining {
        run,
        ready_by,
        check_at: now,
        signal_at: None,
        give_up_at: now + settings.kill_timeout,
        since: now,
    }
}

/// A run that never held a slot (a reload's successor that will not take it) is stopped
/// as any instance: asked (`kill_signal`), SIGKILL at `kill_timeout`.
pub fn stop_run(run: Run, now: Instant, settings: &Settings) -> (Phase, Vec<Action>) {
    ask_to_stop(run, now, settings, vec![])
}

/// A run whose leader has exited (a successor that died): what is left of its group is
/// SIGKILLed now, and the group is looked at until it is empty.
pub fn killed_run(run: Run, now: Instant) -> Phase {
    Phase::Stopping {
        run,
        kill_at: now,
        killed: true,
        exit: None,
        poll_at: Some(now),
    }
}

fn ask_to_stop(
    run: Run,
    now: Instant,
    settings: &Settings,
    mut actions: Vec<Action>,
) -> (Phase, Vec<Action>) {
    actions.insert(0, Action::AskToStop);
    (
        Phase::Stopping {
            run,
            kill_at: now + settings.kill_timeout,
            killed: false,
            exit: None,
            poll_at: None,
        },
        actions,
    )
}

fn after_exit(
    exit: Exit,
    uptime: Duration,
    now: Instant,
    settings: &Settings,
    history: &mut History,
) -> (Phase, Vec<Action>) {
    match decide(&settings.policy, history, exit, uptime) {
        Decision::Restart(delay) => {
            let msg = if delay.is_zero() {
                format!("{exit} after {} ms; restarting", uptime.as_millis())
            } else {
                format!(
                    "{exit} after {} ms; restarting in {} ms",
                    uptime.as_millis(),
                    delay.as_millis()
                )
            };
            (Phase::Pending { at: now + delay }, vec![Action::Say(msg)])
        }
        Decision::Stop => (
            Phase::Stopped { exit: Some(exit) },
            vec![Action::Say(format!("{exit}; not restarted"))],
        ),
        Decision::Errored => {
            let msg = format!(
                "errored: {} runs in a row shorter than min_uptime ({} ms); last: {exit}. Not restarted; other apps keep running",
                history.short_runs,
                settings.policy.min_uptime.as_millis()
            );
            (Phase::Errored { exit }, vec![Action::GaveUp(msg)])
        }
    }
}

#[cfg(test)]
mod tests;

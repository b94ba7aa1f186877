//! The runner: starts every instance of every app, keeps them alive, stops them cleanly.
//!
//! One event loop on one thread owns all state (a current-thread runtime, which is also
//! the long-lived thread that forks, as the parent-death signal needs). Pipes and IPC
//! channels are read by small tasks that feed the loop through one bounded channel, so a
//! flood of output slows the flooding instance down instead of growing hotrun's memory.
//! Timers are state: each slot says when it next needs a tick.

pub mod restart;
pub mod slot;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::net::unix::pipe;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::logs::{self, reader, LogSink, Stream};
use crate::plan::{AppPlan, Plan};
use crate::process::group;
use crate::process::guard::Guard;
use crate::process::reaper::{self, Exit};
use crate::process::spawn::{spawn, SpawnRequest};
use restart::History;
use slot::{Action, Input, Phase, Run, Settings};

/// How long hotrun waits, after the last instance is gone, for the rest of its output.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// What the reader tasks tell the loop.
enum Event {
    Line {
        app: usize,
        id: u32,
        stream: Stream,
        text: Vec<u8>,
    },
    PipeClosed,
    Ipc {
        serial: u64,
        msg: serde_json::Value,
    },
}

/// One slot with what the loop keeps beside its phase.
struct SlotState {
    id: u32,
    pm_id: u32,
    phase: Phase,
    history: History,
    /// hotrun's end of the running process's IPC channel.
    ipc: Option<StdUnixStream>,
}

struct AppState {
    plan: AppPlan,
    settings: Settings,
    slots: Vec<SlotState>,
    gave_up_said: bool,
}

/// Whether hotrun is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Running,
    Graceful,
    Immediate,
}

struct Supervisor {
    apps: Vec<AppState>,
    logs: LogSink,
    guard: Option<Guard>,
    events: mpsc::Sender<Event>,
    /// serial -> (app, slot index).
    serials: HashMap<u64, (usize, usize)>,
    /// pid -> serial, for the reaper's reports.
    pids: HashMap<i32, u64>,
    next_serial: u64,
    open_pipes: usize,
    shutdown: Shutdown,
    /// When everything had ended (then output gets `DRAIN_GRACE` to finish).
    ended_at: Option<Instant>,
    /// The exit code of the instance that failed last (for hotrun's own exit code).
    last_failure: Option<i32>,
}

/// Runs the plan until every instance has ended (stopped by a signal, or nothing left to
/// run). Returns hotrun's exit code.
pub fn run(plan: Plan) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            logs::say(&format!("cannot start the event loop: {e}"));
            return crate::exit::FAILURE;
        }
    };
    rt.block_on(run_loop(plan))
}

async fn run_loop(plan: Plan) -> i32 {
    reaper::become_subreaper();
    // Signal streams first: no exit and no stop request may be missed.
    let streams = (
        signal(SignalKind::child()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let (mut sigchld, mut sigterm, mut sigint) = match streams {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            logs::say("cannot install signal handlers");
            return crate::exit::FAILURE;
        }
    };
    let guard = match Guard::start() {
        Ok(g) => Some(g),
        Err(e) => {
            logs::say(&format!(
                "cannot start the guard process ({e}); if hotrun is killed with SIGKILL, what instances started may survive"
            ));
            None
        }
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let mut sup = Supervisor::new(plan, guard, tx);
    sup.tick(Instant::now());

    loop {
        if let Some(code) = sup.finished(Instant::now()) {
            return code;
        }
        let wake = sup.next_deadline(Instant::now());
        tokio::select! {
            Some(ev) = rx.recv() => sup.on_event(ev),
            _ = sigchld.recv() => sup.on_reaped(reaper::reap()),
            _ = sigterm.recv() => sup.on_stop_signal(Signal::SIGTERM),
            _ = sigint.recv() => sup.on_stop_signal(Signal::SIGINT),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        sup.tick(Instant::now());
    }
}

impl Supervisor {
    fn new(plan: Plan, guard: Option<Guard>, events: mpsc::Sender<Event>) -> Supervisor {
        let logs = LogSink::new(&plan);
        let now = Instant::now();
        let mut pm_id = 0;
        let apps = plan
            .apps
            .into_iter()
            .map(|app| {
                let slots = (0..app.instances)
                    .map(|id| {
                        pm_id += 1;
                        SlotState {
                            id,
                            pm_id: pm_id - 1,
                            phase: Phase::Pending { at: now },
                            history: History::default(),
                            ipc: None,
                        }
                    })
                    .collect();
                AppState {
                    settings: Settings {
                        policy: restart::Policy::of(&app),
                        wait_ready: app.wait_ready,
                        listen_timeout: app.listen_timeout,
                        kill_timeout: app.kill_timeout,
                        kill_signal: app.kill_signal,
                    },
                    plan: app,
                    slots,
                    gave_up_said: false,
                }
            })
            .collect();
        Supervisor {
            apps,
            logs,
            guard,
            events,
            serials: HashMap::new(),
            pids: HashMap::new(),
            next_serial: 1,
            open_pipes: 0,
            shutdown: Shutdown::Running,
            ended_at: None,
            last_failure: None,
        }
    }

    /// The earliest instant any slot needs a tick (a minute away when none does).
    fn next_deadline(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(60);
        for app in &self.apps {
            for slot in &app.slots {
                if let Some(d) = slot.phase.deadline() {
                    wake = wake.min(d);
                }
            }
        }
        if let Some(t) = self.ended_at {
            wake = wake.min(t + DRAIN_GRACE);
        }
        wake
    }

    /// Feeds one input to one slot and carries out the actions.
    fn apply(&mut self, a: usize, s: usize, input: Input, now: Instant) {
        let app = &mut self.apps[a];
        let slot = &mut app.slots[s];
        let before = slot.phase.run().copied();
        let was_final = slot.phase.is_final();
        let phase = std::mem::replace(&mut slot.phase, Phase::Stopped { exit: None });
        let (next, actions) = slot::step(phase, input, now, &app.settings, &mut slot.history);
        slot.phase = next;
        let after = slot.phase.run().copied();
        if let (Some(old), None) = (before, after) {
            self.forget(old);
            let slot = &mut self.apps[a].slots[s];
            slot.ipc = None;
        }
        if let Phase::Errored { exit } | Phase::Stopped { exit: Some(exit) } =
            &self.apps[a].slots[s].phase
        {
            if !was_final && *exit != Exit::Code(0) {
                self.last_failure = Some(exit.as_code());
            }
        }
        for action in actions {
            self.act(a, s, action, before, now);
        }
    }

    fn act(&mut self, a: usize, s: usize, action: Action, ran: Option<Run>, now: Instant) {
        let label = self.label(a, s);
        match action {
            Action::Spawn => self.spawn(a, s, now),
            Action::AskToStop => {
                let app = &self.apps[a];
                let slot = &app.slots[s];
                if let Some(run) = slot.phase.run() {
                    if app.plan.shutdown_with_message {
                        if let Some(ipc) = slot.ipc.as_ref() {
                            let _ = (&*ipc).write_all(b"\"shutdown\"\n");
                        }
                    } else {
                        group::signal(run.pid, app.settings.kill_signal);
                    }
                }
            }
            Action::Kill => {
                let pid = self.apps[a].slots[s]
                    .phase
                    .run()
                    .or(ran.as_ref())
                    .map(|r| r.pid);
                if let Some(pid) = pid {
                    group::signal(pid, Signal::SIGKILL);
                }
            }
            Action::Say(msg) => self.logs.say(&format!("{label} {msg}")),
            Action::GaveUp(msg) => {
                let app = &mut self.apps[a];
                if !app.gave_up_said {
                    app.gave_up_said = true;
                    self.logs.say(&format!("{label} {msg}"));
                }
            }
        }
    }

    fn label(&self, a: usize, s: usize) -> String {
        let app = &self.apps[a];
        if app.plan.instances == 1 {
            app.plan.name.clone()
        } else {
            format!("{}|{}", app.plan.name, app.slots[s].id)
        }
    }

    fn spawn(&mut self, a: usize, s: usize, now: Instant) {
        let app = &self.apps[a];
        let slot = &app.slots[s];
        let req = SpawnRequest {
            app: &app.plan,
            id: slot.id,
            pm_id: slot.pm_id,
        };
        match spawn(&req) {
            Ok(child) => {
                let serial = self.next_serial;
                self.next_serial += 1;
                let run = Run {
                    pid: child.pid,
                    serial,
                    started: now,
                };
                if let Some(g) = self.guard.as_mut() {
                    g.add(child.pid);
                }
                self.serials.insert(serial, (a, s));
                self.pids.insert(child.pid, serial);
                let id = slot.id;
                self.read_pipe(a, id, Stream::Out, child.stdout.into());
                self.read_pipe(a, id, Stream::Err, child.stderr.into());
                let ipc_reader = child.ipc.try_clone().ok();
                self.apps[a].slots[s].ipc = Some(child.ipc);
                if let Some(r) = ipc_reader {
                    self.read_ipc(serial, r);
                }
                self.apply(a, s, Input::Spawned(run), now);
            }
            Err(e) => {
                let label = self.label(a, s);
                let program = self.apps[a].plan.command.program.clone();
                self.logs
                    .say(&format!("{label} could not start: {program}: {e}"));
                self.apply(a, s, Input::SpawnFailed, now);
            }
        }
    }

    fn read_pipe(&mut self, app: usize, id: u32, stream: Stream, fd: std::os::fd::OwnedFd) {
        let rx = match pipe::Receiver::from_owned_fd(fd) {
            Ok(rx) => rx,
            Err(e) => {
                self.logs
                    .say(&format!("cannot read an instance's output: {e}"));
                return;
            }
        };
        self.open_pipes += 1;
        let tx = self.events.clone();
        tokio::spawn(async move {
            reader::read_lines(rx, |text| {
                let tx = tx.clone();
                async move {
                    tx.send(Event::Line {
                        app,
                        id,
                        stream,
                        text,
                    })
                    .await
                    .is_ok()
                }
            })
            .await;
            let _ = tx.send(Event::PipeClosed).await;
        });
    }

    fn read_ipc(&mut self, serial: u64, stream: StdUnixStream) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let Ok(stream) = tokio::net::UnixStream::from_std(stream) else {
            return;
        };
        let tx = self.events.clone();
        tokio::spawn(async move {
            reader::read_lines(stream, |line| {
                let tx = tx.clone();
                async move {
                    match serde_json::from_slice(&line) {
                        Ok(msg) => tx.send(Event::Ipc { serial, msg }).await.is_ok(),
                        Err(_) => true,
                    }
                }
            })
            .await;
        });
    }

    fn forget(&mut self, run: Run) {
        self.serials.remove(&run.serial);
        self.pids.remove(&run.pid);
        if let Some(g) = self.guard.as_mut() {
            g.remove(run.pid);
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Line {
                app,
                id,
                stream,
                text,
            } => self.logs.line(app, id, stream, &text),
            Event::PipeClosed => self.open_pipes -= 1,
            Event::Ipc { serial, msg } => {
                if msg == serde_json::Value::String("ready".into()) {
                    if let Some(&(a, s)) = self.serials.get(&serial) {
                        self.apply(a, s, Input::ReadyMessage, Instant::now());
                    }
                }
            }
        }
    }

    fn on_reaped(&mut self, exits: Vec<(i32, Exit)>) {
        let now = Instant::now();
        for (pid, exit) in exits {
            // Not an instance: an orphan handed to hotrun, or the guard. Reaped, nothing more.
            let Some(&serial) = self.pids.get(&pid) else {
                continue;
            };
            if let Some(&(a, s)) = self.serials.get(&serial) {
                self.apply(a, s, Input::Exited(exit), now);
            }
        }
    }

    fn on_stop_signal(&mut self, sig: Signal) {
        let now = Instant::now();
        match self.shutdown {
            Shutdown::Running => {
                self.shutdown = Shutdown::Graceful;
                self.logs.say(&format!(
                    "{} received: stopping every instance (again to kill at once)",
                    sig.as_str()
                ));
                for a in 0..self.apps.len() {
                    for s in 0..self.apps[a].slots.len() {
                        self.apply(a, s, Input::Stop, now);
                    }
                }
            }
            Shutdown::Graceful | Shutdown::Immediate => {
                self.shutdown = Shutdown::Immediate;
                self.logs.say(&format!(
                    "{} received again: killing every instance",
                    sig.as_str()
                ));
                for a in 0..self.apps.len() {
                    for s in 0..self.apps[a].slots.len() {
                        if let Some(run) = self.apps[a].slots[s].phase.run() {
                            group::signal(run.pid, Signal::SIGKILL);
                        }
                    }
                }
            }
        }
    }

    /// Gives every slot whose deadline has come a tick.
    fn tick(&mut self, now: Instant) {
        for a in 0..self.apps.len() {
            for s in 0..self.apps[a].slots.len() {
                let phase = &self.apps[a].slots[s].phase;
                let due = phase.deadline().is_some_and(|d| d <= now);
                if due {
                    let group_alive = phase.run().is_some_and(|r| group::alive(r.pid));
                    self.apply(a, s, Input::Tick { group_alive }, now);
                }
            }
        }
    }

    /// hotrun's exit code once every slot has ended and the output is drained.
    fn finished(&mut self, now: Instant) -> Option<i32> {
        let all_final = self
            .apps
            .iter()
            .all(|app| app.slots.iter().all(|s| s.phase.is_final()));
        if !all_final {
            return None;
        }
        let ended = *self.ended_at.get_or_insert(now);
        if self.open_pipes > 0 && now < ended + DRAIN_GRACE {
            return None;
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

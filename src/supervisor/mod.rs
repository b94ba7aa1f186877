//! The runner: starts every instance of every app, keeps them alive, replaces them in
//! ready-gated rolling reloads, and stops them cleanly.
//!
//! One event loop on one thread owns all state (a current-thread runtime, which is also
//! the long-lived thread that forks, as the parent-death signal needs). Pipes, IPC
//! channels, notify sockets and control connections are read by small tasks that feed
//! the loop through channels; a flood of output slows the flooding instance down instead
//! of growing hotrun's memory. Timers are state: each slot and rollout says when it next
//! needs a tick.
//!
//! Files: `event_loop.rs` (the loop and what it listens to), `state.rs` (what is kept
//! per app and slot), `timers.rs` (deadlines, the tick, the end), `slot.rs` (an instance
//! slot's lifecycle, pure), `restart.rs` (restart policy, pure), `rollout.rs` (the rolling
//! reload, pure), `instances.rs` (inputs to slots), `runs.rs` (starting processes and
//! reading what they say), `ports.rs` (the shared sockets: handing, steering, draining),
//! `reloads.rs` (driving rollouts), `takeback.rs` (a slot given back to its old instance;
//! parked instances released), `probes.rs` (readiness and liveness probes), `replan.rs`
//! (reading the file again at each reload), `changes.rs` (what differs between two plans), `build.rs` (build, then swap),
//! `triggers.rs` (file changes, memory), `window.rs` (the debounce window of an app's
//! file changes, pure), `events.rs` (reload events), `logbook.rs`
//! (`hotrun logs`), `requests.rs` (the control socket's requests), `console.rs` (`rs`),
//! `status.rs` (`hotrun status`), `check.rs` (`hotrun check`), `effects.rs` (what the
//! runner does to the world, behind a trait: faked by `fake.rs` in `glue_tests.rs`).

mod announce;
mod build;
mod changes;
mod check;
mod console;
mod effects;
mod event_loop;
mod events;
mod handover;
mod instances;
mod logbook;
mod ports;
mod probes;
mod reloads;
pub mod replan;
mod requests;
pub mod restart;
pub mod rollout;
mod runs;
mod scheduled;
pub mod slot;
mod state;
mod status;
mod takeback;
mod takeover;
mod timers;
mod triggers;
mod upgrade;
mod window;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::control::protocol::Response;
use crate::logs::{self, LogSink, Stream};
use crate::plan::Plan;
use crate::process::guard::Guard;
use crate::runtime_dir::RuntimeDir;
use crate::sockets::Listeners;
pub use check::CheckReport;
use effects::Effects;
pub use event_loop::run;
use runs::RunIo;
use slot::{Phase, ReadyBy};
use state::{ready_regex, settings_of};
use state::{AppState, LastReload, SlotState};

/// How long hotrun waits, after the last instance is gone, for the rest of its output.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// What hotrun is running for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serve until stopped.
    Serve,
    /// `hotrun check`: all ready, `reloads` rolling reloads, stop, report.
    Check { reloads: u32 },
}

/// How the runner runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: Mode,
    /// Poll the watched files at this interval instead of using inotify (`--poll`).
    pub poll: Option<Duration>,
    /// How often instances' memory is sampled for `max_memory_restart`.
    pub memory_interval: Duration,
    /// Read `rs` + Enter from stdin to reload every app (`hotrun watch`).
    pub console: bool,
    /// Where the plan came from: reloads read it again. `None`: reloads keep the plan.
    pub source: Option<replan::Source>,
    /// `--http ADDR`: serve /metrics, /livez, /readyz and /status there.
    pub http: Option<String>,
    /// `--shutdown-delay MS`: over the apps' `shutdown_delay`.
    pub shutdown_delay: Option<Duration>,
}

impl RunOptions {
    pub fn new(mode: Mode) -> RunOptions {
        RunOptions {
            mode,
            poll: None,
            memory_interval: Duration::from_secs(1),
            console: false,
            source: None,
            http: None,
            shutdown_delay: None,
        }
    }
}

/// What the reader tasks tell the loop.
enum Event {
    Line {
        serial: u64,
        app: usize,
        id: u32,
        stream: Stream,
        text: Vec<u8>,
    },
    /// An output pipe of run `serial` reached its end (or its reader was stopped).
    PipeClosed {
        serial: u64,
    },
    Ipc {
        serial: u64,
        msg: serde_json::Value,
    },
    Ready {
        serial: u64,
        by: ReadyBy,
    },
    /// A probe of run `serial` answered.
    Probe {
        serial: u64,
        kind: probes::Kind,
        result: Result<String, String>,
    },
    BuildLine {
        app: usize,
        stream: Stream,
        text: Vec<u8>,
    },
    BuildPipeClosed {
        app: usize,
    },
}

/// Whether hotrun is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Running,
    Graceful,
    Immediate,
}

/// A `hotrun reload` that waits: answered when every app it named has finished.
struct PendingReply {
    remaining: usize,
    failures: Vec<String>,
    reply: Option<oneshot::Sender<Response>>,
}

struct Supervisor {
    /// Processes, signals, /proc and the clock (faked in the glue tests).
    fx: Box<dyn Effects>,
    apps: Vec<AppState>,
    logs: LogSink,
    guard: Option<Guard>,
    events: mpsc::Sender<Event>,
    runtime: RuntimeDir,
    /// The ecosystem file (absolute), for `hotrun status` and `hotrun ls`.
    config_file: std::path::PathBuf,
    listeners: Listeners,
    /// When the first stop signal came (a repeat soon after is the same stop).
    first_stop_signal: Option<Instant>,
    /// SIGTERM came with a `shutdown_delay`: not ready any more, every instance stops then.
    stop_at: Option<Instant>,
    /// `--shutdown-delay`, over the apps' own.
    shutdown_delay: Option<Duration>,
    /// The counters `/metrics` serves, with `--http`.
    metrics: Option<crate::http::Metrics>,
    /// The next socket lane given to a reload's successor.
    next_lane: u64,
    /// Where the instances' descendants that left their groups are (see process::tree).
    tree_index: Option<crate::process::tree::Index>,
    /// The CPU share of each instance between two `hotrun status` readings.
    cpu: std::cell::RefCell<crate::memory::CpuMeter>,
    /// Attaching the program that picks ready slots' sockets failed, and was said.
    live_error_said: bool,
    /// serial -> the run's I/O and where it lives.
    runs: HashMap<u64, RunIo>,
    /// pid -> serial, for the reaper's reports.
    pids: HashMap<i32, u64>,
    next_serial: u64,
    /// serial -> how many of the run's output pipes are still read.
    run_pipes: HashMap<u64, usize>,
    /// Failed reloads whose dying instance's output is still being read: announced once
    /// it is read to its end, quoting its last lines (see `reloads::rollout_done`).
    unannounced: Vec<announce::Unannounced>,
    shutdown: Shutdown,
    /// When everything had ended (then output gets `DRAIN_GRACE` to finish).
    ended_at: Option<Instant>,
    /// The exit code of the instance that failed last (for hotrun's own exit code).
    last_failure: Option<i32>,
    replies: HashMap<u64, PendingReply>,
    next_request: u64,
    mode: Mode,
    check: check::CheckState,
    watcher: Option<crate::watch::Watcher>,
    /// Wakes the loop when the watcher has events (shared by every watcher built).
    wake: std::sync::Arc<tokio::sync::Notify>,
    poll: Option<Duration>,
    /// Where the plan came from, to read it again at each reload.
    source: Option<replan::Source>,
    next_pm_id: u32,
    memory_interval: Duration,
    /// Recent output for `hotrun logs`, and its followers.
    logbook: logbook::Logbook,
    /// Running builds: pid -> app.
    builds: HashMap<i32, usize>,
    /// Running `exec` probes: pid -> what they probe.
    probe_children: HashMap<i32, probes::ExecProbe>,
    /// Clients following reload events (`hotrun events`, a waiting `hotrun reload`).
    event_followers: Vec<mpsc::Sender<String>>,
    /// The next memory sample, when an app has `max_memory_restart`.
    memory_check_at: Option<Instant>,
    /// A `hotrun upgrade` (or SIGUSR2) waiting for a moment it can run.
    upgrade_ask: Option<upgrade::Ask>,
    /// How the last upgrade ended (`status`).
    upgraded: Option<crate::control::protocol::UpgradeStatus>,
}

/// At most this many instances are started in one turn of the loop.
const START_BATCH: usize = 16;

/// Where a run lives in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Current,
    Successor,
    Retiring(usize),
}

impl Supervisor {
    fn new(
        plan: Plan,
        guard: Option<Guard>,
        events: mpsc::Sender<Event>,
        runtime: RuntimeDir,
        opts: &RunOptions,
        fx: Box<dyn Effects>,
        mut listeners: Listeners,
    ) -> Result<Supervisor, String> {
        let mode = opts.mode;
        let config_file = plan.config.clone();
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let watch_config = opts
            .source
            .as_ref()
            .filter(|s| s.watch_all)
            .map(|_| plan.config.clone());
        let watcher =
            triggers::watching(&plan, watch_config, opts.poll, &runtime.path, wake.clone())?;
        if let Some(w) = &watcher {
            logs::say(&format!(
                "watching for changes ({} folders)",
                w.watch_count()
            ));
        }
        let logs = LogSink::new(&plan);
        let now = fx.now();
        let mut pm_id = 0;
        let mut apps = Vec::with_capacity(plan.apps.len());
        for app in plan.apps {
            let ports = ports::declared_ports(&app);
            let needs_socket = [&app.readiness_probe, &app.liveness_probe]
                .into_iter()
                .flatten()
                .any(|p| !matches!(p.check, crate::probe::Check::Exec { .. }));
            if needs_socket && ports.is_empty() && !ports::node_like(&app) {
                logs::say(&format!(
                    "{}: an http or tcp probe needs a socket hotrun holds, and this app has none: set `listen` (hotrun binds it and passes it as LISTEN_FDS), or use exec: 'command'",
                    app.name
                ));
            }
            ports::claim_declared(&mut listeners, &app)?;
            let slots = (0..app.instances)
                .map(|id| {
                    pm_id += 1;
                    SlotState::new(id, pm_id - 1, now)
                })
                .collect();
            apps.push(AppState::new(app, ports, slots));
        }
        Ok(Supervisor {
            fx,
            apps,
            logs,
            guard,
            events,
            runtime,
            config_file: config_file.clone(),
            listeners,
            live_error_said: false,
            first_stop_signal: None,
            stop_at: None,
            shutdown_delay: opts.shutdown_delay,
            metrics: None,
            next_lane: 1,
            tree_index: None,
            cpu: Default::default(),
            runs: HashMap::new(),
            pids: HashMap::new(),
            next_serial: 1,
            run_pipes: HashMap::new(),
            unannounced: Vec::new(),
            shutdown: Shutdown::Running,
            ended_at: None,
            last_failure: None,
            replies: HashMap::new(),
            next_request: 1,
            mode,
            check: check::CheckState::new(mode, now),
            watcher,
            wake,
            poll: opts.poll,
            source: opts.source.clone(),
            next_pm_id: pm_id,
            memory_interval: opts.memory_interval,
            logbook: logbook::Logbook::default(),
            builds: HashMap::new(),
            probe_children: HashMap::new(),
            event_followers: Vec::new(),
            memory_check_at: None,
            upgrade_ask: None,
            upgraded: None,
        })
    }

    /// Builds the watcher again from the apps' current plans (their watch settings changed).
    fn rebuild_watcher(&mut self) {
        let plan = Plan {
            config: self
                .source
                .as_ref()
                .map(|s| s.opts.config.clone().unwrap_or_default())
                .unwrap_or_default(),
            profile: None,
            apps: self
                .apps
                .iter()
                .map(|a| {
                    let mut p = a.plan.clone();
                    if a.removed {
                        p.watch.clear();
                    }
                    p
                })
                .collect(),
        };
        let config = self
            .watcher
            .as_ref()
            .and_then(|w| w.config_file().map(Path::to_path_buf));
        self.watcher = None;
        match triggers::watching(
            &plan,
            config,
            self.poll,
            &self.runtime.path,
            self.wake.clone(),
        ) {
            Ok(w) => self.watcher = w,
            Err(e) => self
                .logs
                .say(&format!("cannot watch for changes any more: {e}")),
        }
    }

    /// Where the run `serial` is.
    fn locate(&self, serial: u64) -> Option<(usize, usize, Role)> {
        let io = self.runs.get(&serial)?;
        let (a, s) = (io.app, io.slot);
        let app = &self.apps[a];
        let slot = &app.slots[s];
        let is = |p: &Phase| p.run().is_some_and(|r| r.serial == serial);
        if is(&slot.phase) {
            return Some((a, s, Role::Current));
        }
        if app
            .reload
            .rollout()
            .is_some_and(|r| r.successors().any(|(_, run)| run.serial == serial))
        {
            return Some((a, s, Role::Successor));
        }
        slot.retiring
            .iter()
            .position(is)
            .map(|i| (a, s, Role::Retiring(i)))
    }

    fn label(&self, a: usize, s: usize) -> String {
        let app = &self.apps[a];
        if app.plan.instances == 1 {
            app.plan.name.clone()
        } else {
            format!("{}|{}", app.plan.name, app.slots[s].id)
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Line {
                serial,
                app,
                id,
                stream,
                text,
            } => {
                if stream == Stream::Err {
                    if let Some(io) = self.runs.get_mut(&serial) {
                        io.remember_stderr(&text);
                    }
                    if !self.unannounced.is_empty() {
                        let now = self.fx.now();
                        self.stderr_of_unannounced(serial, &text, now);
                    }
                }
                if let Some(re) = &self.apps[app].ready_re {
                    if re.is_match(&String::from_utf8_lossy(&text)) {
                        self.on_ready(serial, ReadyBy::Pattern);
                    }
                }
                self.logs.line(app, id, stream, &text);
                let (name, single) = (
                    &self.apps[app].plan.name,
                    self.apps[app].plan.instances == 1,
                );
                let label = if single {
                    name.clone()
                } else {
                    format!("{name}|{id}")
                };
                self.logbook
                    .record(name, app, &label, id, stream == Stream::Err, &text);
            }
            Event::PipeClosed { serial } => self.pipe_closed(serial),
            Event::Ipc { serial, msg } => self.on_ipc(serial, msg),
            Event::Ready { serial, by } => self.on_ready(serial, by),
            Event::Probe {
                serial,
                kind,
                result,
            } => self.on_probe(serial, kind, result),
            Event::BuildLine { app, stream, text } => self.on_build_line(app, stream, &text),
            Event::BuildPipeClosed { app } => self.on_build_pipe_closed(app, self.fx.now()),
        }
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod glue_tests;
#[cfg(test)]
pub(crate) mod tests_support;

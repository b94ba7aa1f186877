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
//! Files: `slot.rs` (an instance slot's lifecycle, pure), `restart.rs` (restart policy,
//! pure), `rollout.rs` (the rolling reload, pure), `instances.rs` (inputs to slots),
//! `runs.rs` (starting processes and reading what they say), `reloads.rs` (driving
//! rollouts), `replan.rs` (reading the file again at each reload), `build.rs` (build, then
//! swap), `triggers.rs` (file changes, memory), `events.rs` (reload events), `logbook.rs`
//! (`hotrun logs`), `requests.rs` (the control socket's requests), `console.rs` (`rs`),
//! `status.rs` (`hotrun status`), `check.rs` (`hotrun check`), `effects.rs` (what the
//! runner does to the world, behind a trait: faked by `fake.rs` in `glue_tests.rs`).

mod build;
mod check;
mod console;
mod effects;
mod events;
mod instances;
mod logbook;
mod reloads;
pub mod replan;
mod requests;
pub mod restart;
pub mod rollout;
mod runs;
mod scheduled;
pub mod slot;
mod status;
mod triggers;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::control::protocol::Response;
use crate::control::server::{self, Incoming, SocketFile};
use crate::logs::{self, LogSink, Stream};
use crate::plan::{AppPlan, Plan};
use crate::process::guard::Guard;
use crate::process::reaper;
use crate::runtime_dir::RuntimeDir;
use crate::sockets::reuseport::Member;
use crate::sockets::{ListenAddr, Listeners};
pub use check::CheckReport;
use effects::Effects;
use restart::History;
use rollout::{Queue, Rollout};
use runs::RunIo;
use slot::{Input, Phase, ReadyBy, Settings};

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
    PipeClosed,
    Ipc {
        serial: u64,
        msg: serde_json::Value,
    },
    Ready {
        serial: u64,
        by: ReadyBy,
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

/// One slot with what the loop keeps beside its phase.
struct SlotState {
    id: u32,
    pm_id: u32,
    /// The slot's instance.
    phase: Phase,
    history: History,
    /// Times a reload's successor took this slot (`status`' reloads per instance).
    reloads: u32,
    /// Instances of this slot being stopped: replaced ones, failed successors.
    retiring: Vec<Phase>,
    /// `hotrun restart`: start again once stopped.
    restart_after_stop: bool,
    /// Scaled away: stopping, then dropped.
    surplus: bool,
    /// Which of the slot's listening sockets its instance uses (see `sockets::Member`):
    /// a restart keeps it, a reload's successor brings a new one.
    lane: u64,
    memory: triggers::MemoryHistory,
}

impl SlotState {
    fn new(id: u32, pm_id: u32, now: Instant) -> SlotState {
        SlotState {
            id,
            pm_id,
            phase: Phase::Pending { at: now },
            history: History::default(),
            reloads: 0,
            retiring: Vec::new(),
            restart_after_stop: false,
            surplus: false,
            lane: 0,
            memory: Default::default(),
        }
    }
}

/// The result of the last reload of an app.
#[derive(Debug, Clone)]
struct LastReload {
    trigger: &'static str,
    ok: bool,
    at: chrono::DateTime<chrono::Local>,
}

struct AppState {
    plan: AppPlan,
    settings: Settings,
    slots: Vec<SlotState>,
    gave_up_said: bool,
    /// The sockets every new instance gets: `listen`, then `port`, then ports learned
    /// from the instances' own `listen()` calls.
    ports: Vec<ListenAddr>,
    rollout: Option<Rollout>,
    queue: Queue<u64>,
    reloads: u32,
    last_reload: Option<LastReload>,
    /// File changes waiting for the end of their debounce window.
    changes: Option<triggers::Changes>,
    /// Which changed paths the app's own starts cause (the loop guard).
    echo: crate::watch::echo::EchoGuard,
    /// Whether the app was starting at the last tick (its start window is open).
    in_start_window: bool,
    /// The plan read at the last reload request, applied when its rollout begins.
    next_plan: Option<AppPlan>,
    /// Gone from the ecosystem file (stopped; kept so indexes stay valid).
    removed: bool,
    /// When the reload in flight began (its build included), for its duration.
    reload_began: Option<Instant>,
    /// `ready_pattern`, compiled (it was checked when the file was read).
    ready_re: Option<regex::Regex>,
    /// The app's `build` while it runs.
    build: Option<build::Build>,
    /// When the last build ran (from, to): file changes made then are its own output.
    last_build: Option<(Instant, Instant)>,
    /// `cron_restart`: the expression and its next run.
    scheduled: Option<scheduled::Scheduled>,
}

impl AppState {
    fn new(plan: AppPlan, ports: Vec<ListenAddr>, slots: Vec<SlotState>) -> AppState {
        AppState {
            settings: settings_of(&plan, &ports, false),
            slots,
            gave_up_said: false,
            ports,
            rollout: None,
            queue: Queue::default(),
            reloads: 0,
            last_reload: None,
            changes: None,
            echo: Default::default(),
            in_start_window: false,
            next_plan: None,
            removed: false,
            reload_began: None,
            ready_re: ready_regex(&plan),
            build: None,
            last_build: None,
            scheduled: None,
            plan,
        }
    }
}

/// The app's `ready_pattern`, compiled.
fn ready_regex(plan: &AppPlan) -> Option<regex::Regex> {
    plan.ready_pattern
        .as_deref()
        .and_then(|p| regex::Regex::new(p).ok())
}

/// The slot settings of an app; `learned` = its instances asked for a port already.
fn settings_of(app: &AppPlan, ports: &[ListenAddr], learned: bool) -> Settings {
    Settings {
        policy: restart::Policy::of(app),
        wait_ready: app.wait_ready,
        expect_listen: learned || runs::expects_listen(app, ports),
        ready_pattern: app.ready_pattern.is_some(),
        listen_timeout: app.listen_timeout,
        kill_timeout: app.kill_timeout,
        kill_signal: app.kill_signal,
        drain_delay: app.drain_delay,
    }
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
    open_pipes: usize,
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
    /// Clients following reload events (`hotrun events`, a waiting `hotrun reload`).
    event_followers: Vec<mpsc::Sender<String>>,
    /// The next memory sample, when an app has `max_memory_restart`.
    memory_check_at: Option<Instant>,
}

/// Runs the plan until every instance has ended (stopped by a signal or `hotrun stop`, or
/// nothing left to run). Returns hotrun's exit code.
pub fn run(plan: Plan, opts: RunOptions) -> i32 {
    // From here on an unread console never stalls the loop; what is queued is flushed
    // (for a moment at most) when the runner returns.
    let _console = logs::stdio::Console::start();
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
    rt.block_on(run_loop(plan, opts))
}

async fn run_loop(plan: Plan, opts: RunOptions) -> i32 {
    reaper::become_subreaper();
    // Signal streams first: no exit and no stop request may be missed.
    let streams = (
        signal(SignalKind::child()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    let (mut sigchld, mut sigterm, mut sigint, mut sighup) = match streams {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        _ => {
            logs::say("cannot install signal handlers");
            return crate::exit::FAILURE;
        }
    };
    let runtime = match RuntimeDir::create(&plan.config) {
        Ok(dir) => dir,
        Err(e) => {
            logs::say(&format!("cannot create hotrun's runtime folder: {e}"));
            return crate::exit::FAILURE;
        }
    };
    let socket_path = runtime.control_socket();
    let control = match server::bind(&socket_path) {
        Ok(l) => l,
        Err(e) => {
            logs::say(&format!("cannot open the control socket: {e}"));
            return crate::exit::FAILURE;
        }
    };
    let _socket_file = SocketFile(socket_path);
    let (control_tx, mut control_rx) = mpsc::channel::<Incoming>(64);
    // The endpoint is bound before anything starts: a port in use stops hotrun here.
    let endpoint = match opts.http.as_deref().map(crate::http::bind).transpose() {
        Ok(e) => e,
        Err(msg) => {
            logs::say(&msg);
            return crate::exit::FAILURE;
        }
    };
    let metrics = endpoint.map(|(listener, addr)| {
        let metrics = crate::http::Metrics::new();
        logs::say(&format!(
            "serving /metrics, /livez, /readyz and /status on http://{addr}"
        ));
        tokio::spawn(crate::http::serve(
            listener,
            control_tx.clone(),
            metrics.clone(),
        ));
        metrics
    });
    tokio::spawn(server::serve(control, control_tx));

    let guard = match Guard::start() {
        Ok(mut g) => {
            g.mark(&runtime.control_socket());
            Some(g)
        }
        Err(e) => {
            logs::say(&format!(
                "cannot start the guard process ({e}); if hotrun is killed with SIGKILL, what instances started may survive"
            ));
            None
        }
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let mut sup = match Supervisor::new(plan, guard, tx, runtime, &opts, Box::new(effects::System))
    {
        Ok(sup) => sup,
        Err(msg) => {
            logs::say(&msg);
            return crate::exit::FAILURE;
        }
    };
    sup.metrics = metrics;
    let fs_events = Some(sup.wake.clone());
    let (console_tx, mut console_rx) = mpsc::channel::<String>(8);
    if opts.console {
        console::read_lines(console_tx);
    }
    let now = sup.fx.now();
    sup.start_initial_builds(now);
    sup.tick(now);

    loop {
        if let Some(code) = sup.finished(sup.fx.now()) {
            return code;
        }
        // Something still due (starts left for the next batch) waits a millisecond: the
        // runtime then reads signals and sockets before the loop goes on.
        let now = sup.fx.now();
        let wake = sup.next_deadline(now).max(now + Duration::from_millis(1));
        tokio::select! {
            Some(ev) = rx.recv() => sup.on_event(ev),
            Some(incoming) = control_rx.recv() => sup.on_request(incoming),
            _ = sigchld.recv() => sup.on_reaped(reaper::reap()),
            _ = sigterm.recv() => sup.on_stop_signal(Signal::SIGTERM, sup.fx.now()),
            _ = sigint.recv() => sup.on_stop_signal(Signal::SIGINT, sup.fx.now()),
            _ = sighup.recv() => {
                sup.reload_apps(None, rollout::Trigger::Signal, None);
            }
            _ = triggers::wait_fs(&fs_events) => sup.on_fs_events(),
            Some(line) = console_rx.recv() => sup.on_console(&line),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = sup.fx.now();
        sup.tick(now);
    }
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
        let mut listeners = Listeners::default();
        let mut pm_id = 0;
        let mut apps = Vec::with_capacity(plan.apps.len());
        for app in plan.apps {
            let ports = runs::declared_ports(&app);
            for addr in &ports {
                let first = Member::new(&app.name, 0);
                listeners.get_or_bind(*addr, &first).map_err(|e| {
                    format!(
                        "{}: cannot listen on {addr}: {}",
                        app.name,
                        runs::bind_error(&e)
                    )
                })?;
            }
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
            open_pipes: 0,
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
            event_followers: Vec::new(),
            memory_check_at: None,
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

    /// The earliest instant anything needs a tick (a minute away when nothing does).
    fn next_deadline(&self, now: Instant) -> Instant {
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
            if let Some(d) = app.rollout.as_ref().and_then(Rollout::deadline) {
                wake = wake.min(d);
            }
            if let Some(c) = &app.changes {
                wake = wake.min(c.deadline());
            }
        }
        for a in 0..self.apps.len() {
            if let Some(d) = self.build_deadline(a) {
                wake = wake.min(d);
            }
        }
        if let Some(t) = self.memory_check_at {
            wake = wake.min(t);
        }
        if let Some(t) = self.schedule_deadline() {
            wake = wake.min(t);
        }
        if let Some(t) = self.stop_at {
            wake = wake.min(t);
        }
        if let Some(t) = self.ended_at {
            wake = wake.min(t + DRAIN_GRACE);
        }
        wake
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
            .rollout
            .as_ref()
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
            Event::PipeClosed => self.open_pipes -= 1,
            Event::Ipc { serial, msg } => self.on_ipc(serial, msg),
            Event::Ready { serial, by } => self.on_ready(serial, by),
            Event::BuildLine { app, stream, text } => self.on_build_line(app, stream, &text),
            Event::BuildPipeClosed { app } => self.on_build_pipe_closed(app, self.fx.now()),
        }
    }

    /// Gives everything whose deadline has come a tick.
    /// A draining instance whose accept queue the loop now sees empty.
    fn drained(&self, phase: &Phase) -> bool {
        match phase {
            Phase::Draining {
                run,
                signal_at: None,
                ..
            } => self.queue_empty(run.serial),
            _ => false,
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.stop_at.is_some_and(|t| t <= now) {
            self.stop_at = None;
            self.logs
                .say("shutdown_delay passed: stopping every instance");
            self.stop_all();
        }
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
                    if self.drained(phase) {
                        self.apply(a, s, Input::QueueEmpty, now);
                    }
                    let group_alive = self.tree_alive(&self.apps[a].slots[s].phase);
                    self.apply(a, s, Input::Tick { group_alive }, now);
                }
                let mut i = 0;
                while i < self.apps[a].slots[s].retiring.len() {
                    let phase = &self.apps[a].slots[s].retiring[i];
                    let len = self.apps[a].slots[s].retiring.len();
                    if phase.deadline().is_some_and(|d| d <= now) {
                        if self.drained(phase) {
                            self.apply_retiring(a, s, i, Input::QueueEmpty, now);
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
                .rollout
                .as_ref()
                .and_then(Rollout::deadline)
                .is_some_and(|d| d <= now)
            {
                self.rollout_input(a, rollout::Input::Tick, now);
            }
        }
        self.check_build_timeouts(now);
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
    fn finished(&mut self, now: Instant) -> Option<i32> {
        let all_final = self.apps.iter().all(|app| {
            app.slots
                .iter()
                .all(|s| s.phase.is_final() && s.retiring.is_empty())
                && app.rollout.is_none()
                && app.build.is_none()
        });
        if !all_final {
            return None;
        }
        let ended = *self.ended_at.get_or_insert(now);
        if self.open_pipes > 0 && now < ended + DRAIN_GRACE {
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

#[cfg(test)]
mod fake;
#[cfg(test)]
mod glue_tests;
#[cfg(test)]
pub(crate) mod tests_support;

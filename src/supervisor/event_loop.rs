//! The event loop: one current-thread runtime, the signal streams, the control socket,
//! the HTTP endpoint and the guard set up before anything starts, then one `select!` over
//! every source until the supervisor says it has finished.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, Signal as UnixSignal, SignalKind};
use tokio::sync::mpsc;

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use super::{console, effects, handover, rollout, takeover, triggers, RunOptions, Supervisor};
use crate::control::server::{self, Incoming, SocketFile};
use crate::logs;
use crate::plan::Plan;
use crate::process::guard::Guard;
use crate::process::reaper;
use crate::runtime_dir::RuntimeDir;
use crate::sockets::Listeners;
use crate::upgrade;

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

/// The signals the loop answers.
pub(super) struct Signals {
    pub(super) child: UnixSignal,
    pub(super) term: UnixSignal,
    pub(super) int: UnixSignal,
    pub(super) hup: UnixSignal,
    usr2: UnixSignal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            child: signal(SignalKind::child())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }
}

/// What the loop serves beside the instances: the control socket (its file removed when
/// this is dropped), and the HTTP endpoint with its metrics when `--http` is set. Both
/// send their requests to the returned receiver.
type Served = (
    SocketFile,
    mpsc::Receiver<Incoming>,
    Option<crate::http::Metrics>,
    ControlServer,
    Option<RawFd>,
);

/// The control socket's accept loop, which an upgrade pauses before its exec (the
/// connections that arrive then wait in the socket's queue for the new image), and a
/// descriptor of the socket that outlives the loop.
pub(super) struct ControlServer {
    fd: OwnedFd,
    tx: mpsc::Sender<Incoming>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ControlServer {
    fn start(
        listener: tokio::net::UnixListener,
        tx: mpsc::Sender<Incoming>,
    ) -> std::io::Result<ControlServer> {
        let fd = listener.as_fd().try_clone_to_owned()?;
        let task = Some(tokio::spawn(server::serve(listener, tx.clone())));
        Ok(ControlServer { fd, tx, task })
    }

    /// The socket's descriptor, for the state.
    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// No more connections are accepted (those accepted already are answered).
    pub(super) fn pause(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Accepting again (an upgrade that did not happen).
    pub(super) fn resume(&mut self) {
        if self.task.is_some() {
            return;
        }
        let listener = self
            .fd
            .try_clone()
            .map(std::os::unix::net::UnixListener::from)
            .and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::UnixListener::from_std(l)
            });
        match listener {
            Ok(l) => self.task = Some(tokio::spawn(server::serve(l, self.tx.clone()))),
            Err(e) => logs::say(&format!("cannot accept on the control socket again: {e}")),
        }
    }
}

fn serve(
    runtime: &RuntimeDir,
    opts: &RunOptions,
    adopted: Option<&upgrade::state::State>,
) -> Result<Served, String> {
    let socket_path = runtime.control_socket();
    let control = match adopted {
        Some(state) => takeover::control(state.control_fd),
        None => server::bind(&socket_path),
    }
    .map_err(|e| format!("cannot open the control socket: {e}"))?;
    let socket_file = SocketFile(socket_path);
    let (control_tx, control_rx) = mpsc::channel::<Incoming>(64);
    // The endpoint is bound before anything starts: a port in use stops hotrun here.
    let endpoint = match adopted.and_then(|s| s.http_fd) {
        Some(fd) => Some(takeover::http(fd).map_err(|e| format!("cannot take over --http: {e}"))?),
        None => opts.http.as_deref().map(crate::http::bind).transpose()?,
    };
    let http_fd = endpoint.as_ref().map(|(l, _)| l.as_raw_fd());
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
    let control = ControlServer::start(control, control_tx)
        .map_err(|e| format!("cannot serve the control socket: {e}"))?;
    Ok((socket_file, control_rx, metrics, control, http_fd))
}

/// The guard process, which stops every instance if hotrun is killed; none (said) when
/// it cannot start.
fn start_guard(runtime: &RuntimeDir) -> Option<Guard> {
    match Guard::start() {
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
    }
}

async fn run_loop(plan: Plan, opts: RunOptions) -> i32 {
    reaper::become_subreaper();
    // Signal streams first: no exit and no stop request may be missed. After an
    // upgrade's exec they wait blocked until the state is taken (or handed back).
    let Ok(mut signals) = Signals::install() else {
        logs::say("cannot install signal handlers");
        return crate::exit::FAILURE;
    };
    let (adopted, refused) = match takeover::received(&plan) {
        Ok(received) => received.unzip(),
        Err(code) => return code,
    };
    let refused = refused.flatten();
    upgrade::exec::unblock_signals();
    let own = match upgrade::exec::own_binary() {
        Ok(f) => Some(f),
        Err(e) => {
            logs::say(&format!(
                "cannot open hotrun's own binary ({e}): hotrun upgrade cannot fall back"
            ));
            None
        }
    };
    let runtime = match RuntimeDir::create(&plan.config) {
        Ok(dir) => dir,
        Err(e) => {
            logs::say(&format!("cannot create hotrun's runtime folder: {e}"));
            return crate::exit::FAILURE;
        }
    };
    let (_socket_file, mut control_rx, metrics, mut control, http_fd) =
        match serve(&runtime, &opts, adopted.as_ref()) {
            Ok(served) => served,
            Err(msg) => {
                logs::say(&msg);
                return crate::exit::FAILURE;
            }
        };
    let (guard, listeners) = match &adopted {
        Some(state) => takeover::guard_and_sockets(state),
        None => (start_guard(&runtime), Listeners::default()),
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let fx = Box::new(effects::System);
    let mut sup = match Supervisor::new(plan, guard, tx, runtime, &opts, fx, listeners) {
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
    match adopted {
        Some(state) => sup.took_over(state, refused, now),
        None => sup.start_initial_builds(now),
    }
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
            _ = signals.child.recv() => sup.on_reaped(reaper::reap()),
            _ = signals.term.recv() => sup.on_stop_signal(Signal::SIGTERM, sup.fx.now()),
            _ = signals.int.recv() => sup.on_stop_signal(Signal::SIGINT, sup.fx.now()),
            _ = signals.hup.recv() => {
                sup.reload_apps(None, rollout::Trigger::Signal, None);
            }
            _ = signals.usr2.recv() => {
                let now = sup.fx.now();
                sup.ask_upgrade(None, 0, None, now);
            }
            _ = triggers::wait_fs(&fs_events) => sup.on_fs_events(),
            Some(line) = console_rx.recv() => sup.on_console(&line),
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = sup.fx.now();
        sup.tick(now);
        if let Some(ask) = sup.upgrade_due(now) {
            let held = super::upgrade::Held {
                control_fd: control.raw_fd(),
                http_fd,
                refuse: ask.refuse,
            };
            let mut lp = handover::Loop {
                events: &mut rx,
                requests: &mut control_rx,
                signals: &mut signals,
                control: &mut control,
            };
            handover::run(&mut sup, &mut lp, ask, held, own.as_ref()).await;
        }
    }
}

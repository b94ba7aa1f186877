//! The exec of an upgrade, in the event loop: the new binary checked (`--version`, and
//! that it reads the ecosystem file), the output readers stopped at a line boundary
//! while the loop keeps writing what they read, the state sealed, the answer sent, then
//! the exec. Whatever fails before the exec leaves hotrun as it was, readers going again.

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;

use super::upgrade::{Ask, Held, Pipes};
use super::{Event, Supervisor};
use crate::control::protocol::{Request, Response, UpgradeStatus};
use crate::control::server::Incoming;
use crate::upgrade::{self, exec, state};

/// What the event loop lends the upgrade: its inputs, to go on serving while the new
/// binary is checked, and its control socket's accept loop, to pause.
pub(super) struct Loop<'a> {
    pub events: &'a mut mpsc::Receiver<Event>,
    pub requests: &'a mut mpsc::Receiver<Incoming>,
    pub signals: &'a mut super::event_loop::Signals,
    pub control: &'a mut super::event_loop::ControlServer,
}

/// Runs the upgrade `ask` with `own`, the descriptor of this binary to fall back to (an
/// upgrade without one is refused); returns only when it did not happen.
pub(super) async fn run(
    sup: &mut Supervisor,
    lp: &mut Loop<'_>,
    ask: Ask,
    held: Held,
    own: Option<&std::fs::File>,
) {
    match own {
        Some(own) => hand_over(sup, lp, ask, held, own).await,
        None => ask.answer(
            &mut sup.logs,
            Response::err("hotrun cannot open its own binary to fall back to"),
        ),
    }
}

/// Runs the upgrade `ask`; returns only when it did not happen (said to the asker).
async fn hand_over(
    sup: &mut Supervisor,
    lp: &mut Loop<'_>,
    ask: Ask,
    held: Held,
    own: &std::fs::File,
) {
    let Some(target) = ask.binary.clone().or_else(own_path) else {
        let msg = "cannot find this hotrun's binary: name one with --binary PATH";
        return ask.answer(&mut sup.logs, Response::err(msg));
    };
    sup.logs
        .say(&format!("upgrade: checking {}", target.display()));
    // The checks run the new binary (up to 5 s for one that hangs): the loop serves
    // meanwhile.
    let config = config_check(sup, &target);
    let binary = target.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let version = upgrade::check_binary(&binary)?;
        if let Some(cmd) = config {
            reads_the_file(cmd, &binary)?;
        }
        Ok::<_, String>(version)
    });
    let checked = serving(sup, lp, checks).await;
    let version = match checked {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return ask.answer(&mut sup.logs, Response::err(e)),
        Err(e) => return ask.answer(&mut sup.logs, Response::err(e.to_string())),
    };
    if let Some(why) = sup.upgrade_blocker().or_else(|| sup.file_changed()) {
        return ask.answer(&mut sup.logs, Response::err(why));
    }
    let pipes = stop_readers(sup, lp.events).await;
    if let Some(why) = sup.upgrade_blocker() {
        sup.resume_readers(pipes);
        return ask.answer(&mut sup.logs, Response::err(why));
    }
    let now = sup.fx.now();
    let state = sup.freeze(&pipes, &held, now);
    let sealed = match state::seal(&state) {
        Ok(fd) => fd,
        Err(e) => {
            sup.resume_readers(pipes);
            let msg = format!("cannot write the state to hand over: {e}");
            return ask.answer(&mut sup.logs, Response::err(msg));
        }
    };
    let (runs, sockets) = (
        state.runs.len(),
        state.groups.iter().map(|g| g.members.len()).sum::<usize>(),
    );
    sup.logs.say(&format!(
        "upgrading to {version} ({}): {runs} instance(s) and {sockets} socket(s) handed over",
        target.display()
    ));
    if let Some(reply) = ask.reply {
        let _ = reply.send(Response::ok(format!("upgrading to {version}")));
    }
    // New connections wait in the socket's queue for the new image; those accepted
    // already are answered (requests coming on them meanwhile are taken here).
    lp.control.pause();
    let settle = tokio::time::sleep(Duration::from_millis(50));
    tokio::pin!(settle);
    let mut signalled = None;
    while signalled.is_none() {
        tokio::select! {
            _ = &mut settle => break,
            Some(incoming) = lp.requests.recv() => answer_meanwhile(sup, incoming),
            sig = stop_signal(lp.signals) => signalled = Some(sig),
        }
    }
    while let Ok(incoming) = lp.requests.try_recv() {
        answer_meanwhile(sup, incoming);
    }
    crate::logs::stdio::flush_for(Duration::from_secs(2));
    let mut keep = state.fds();
    keep.extend([sealed.as_raw_fd(), own.as_raw_fd()]);
    let failed = match exec::close_on_exec(&keep, false) {
        Ok(()) if signalled.is_none() => {
            exec::block_signals();
            // A stop or reload signal that came while the state was sealed is answered
            // here, not lost in the exec.
            signalled = pending_signal(lp.signals).await;
            let err = match signalled {
                Some(_) => None,
                None => Some(exec::exec(
                    exec::Target::Path(&target),
                    sealed.as_raw_fd(),
                    own.as_raw_fd(),
                    None,
                )),
            };
            exec::unblock_signals();
            err
        }
        Ok(()) => None,
        Err(e) => Some(e),
    };
    // Still here: the exec failed, or a signal came. Nothing was handed over.
    let _ = exec::close_on_exec(&keep, true);
    lp.control.resume();
    sup.resume_readers(pipes);
    not_done(sup, signalled, failed, &target);
}

/// Says why an upgrade that got as far as the exec did not happen (a signal came, or the
/// exec failed), and answers the signal.
fn not_done(
    sup: &mut Supervisor,
    signalled: Option<Signal>,
    failed: Option<std::io::Error>,
    target: &std::path::Path,
) {
    let why = match (&signalled, failed) {
        (Some(sig), _) => format!("{} came during the upgrade", sig.as_str()),
        (None, Some(err)) => format!("cannot exec {}: {err}", target.display()),
        (None, None) => "it was cancelled".to_string(),
    };
    sup.logs
        .say(&format!("upgrade not done: {why}; this hotrun runs on"));
    sup.upgraded = Some(UpgradeStatus {
        at: chrono::Local::now().to_rfc3339(),
        from: env!("CARGO_PKG_VERSION").into(),
        ok: false,
        refused: Some(why),
    });
    if let Some(sig) = signalled {
        answer_signal(sup, sig);
    }
}

/// A request that came while the state is sealed: what only reads is answered, what
/// would change something is told to come again (the new image answers it).
fn answer_meanwhile(sup: &mut Supervisor, incoming: Incoming) {
    match incoming.request {
        Request::Status | Request::Logs { follow: false, .. } => sup.on_request(incoming),
        _ => {
            let _ = incoming
                .reply
                .send(Response::err("hotrun is upgrading: ask again in a moment"));
        }
    }
}

/// This binary's own path: a file replaced on disk (`cargo install`, a package
/// upgrade) is the new version.
fn own_path() -> Option<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let shown = exe.to_string_lossy();
    Some(match shown.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Waits for `task` while the loop goes on: instances' events, control requests and
/// stop or reload signals are answered meanwhile (what changes then is checked after).
/// Exits are reaped after: the checks wait for their own children, which a
/// `waitpid(-1)` here would take from them; timers wait too (an exec probe they start
/// would be such a child).
async fn serving<T>(
    sup: &mut Supervisor,
    lp: &mut Loop<'_>,
    task: tokio::task::JoinHandle<T>,
) -> Result<T, tokio::task::JoinError> {
    tokio::pin!(task);
    loop {
        tokio::select! {
            done = &mut task => return done,
            Some(ev) = lp.events.recv() => sup.on_event(ev),
            Some(incoming) = lp.requests.recv() => sup.on_request(incoming),
            sig = stop_signal(lp.signals) => answer_signal(sup, sig),
        }
    }
}

/// The next SIGTERM, SIGINT or SIGHUP.
async fn stop_signal(signals: &mut super::event_loop::Signals) -> Signal {
    tokio::select! {
        _ = signals.term.recv() => Signal::SIGTERM,
        _ = signals.int.recv() => Signal::SIGINT,
        _ = signals.hup.recv() => Signal::SIGHUP,
    }
}

/// A stop or reload signal already received, if any (without waiting).
async fn pending_signal(signals: &mut super::event_loop::Signals) -> Option<Signal> {
    tokio::select! {
        biased;
        sig = stop_signal(signals) => Some(sig),
        _ = std::future::ready(()) => None,
    }
}

/// What the loop does with a stop or reload signal.
fn answer_signal(sup: &mut Supervisor, sig: Signal) {
    match sig {
        Signal::SIGHUP => {
            sup.reload_apps(None, super::rollout::Trigger::Signal, None);
        }
        _ => {
            let now = sup.fx.now();
            sup.on_stop_signal(sig, now)
        }
    }
}

/// `binary config` as this hotrun reads its file (`--config`, `--env`, `--only`, its
/// folder); `None` without a file.
fn config_check(sup: &Supervisor, binary: &std::path::Path) -> Option<std::process::Command> {
    let source = sup.source.as_ref()?;
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("config")
        .arg("--config")
        .arg(&sup.config_file)
        .current_dir(&source.opts.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
    if let Some(env) = &source.opts.profile {
        cmd.arg("--env").arg(env);
    }
    if !source.opts.only.is_empty() {
        cmd.arg("--only").arg(source.opts.only.join(","));
    }
    Some(cmd)
}

/// Whether `binary` reads the ecosystem file (`cmd`, from `config_check`): the first
/// lines of what it said when it does not.
fn reads_the_file(mut cmd: std::process::Command, binary: &std::path::Path) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{} config does not run: {e}", binary.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .take(3)
        .map(String::from)
        .collect();
    Err(format!(
        "{} does not read the ecosystem file: {}",
        binary.display(),
        said.join(" / ")
    ))
}

/// Stops every output reader at a line boundary; what they read meanwhile is written
/// (the loop takes the events they send while they stop). Their pipes come back.
async fn stop_readers(sup: &mut Supervisor, events: &mut mpsc::Receiver<Event>) -> Pipes {
    let mut readers = sup.stop_readers();
    let mut pipes = Pipes::new();
    while !readers.is_empty() {
        let mut i = 0;
        while i < readers.len() {
            if readers[i].1.task.is_finished() {
                let (serial, r) = readers.swap_remove(i);
                let stream = r.stream;
                if let Ok(Some((fd, pending))) = r.task.await {
                    pipes.insert((serial, stream), (fd, pending));
                }
            } else {
                i += 1;
            }
        }
        if readers.is_empty() {
            break;
        }
        tokio::select! {
            Some(ev) = events.recv() => sup.on_event(ev),
            _ = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
    while let Ok(ev) = events.try_recv() {
        sup.on_event(ev);
    }
    pipes
}

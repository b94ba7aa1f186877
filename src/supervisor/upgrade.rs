//! The supervisor's side of `hotrun upgrade`: when it can run (`upgrade_blocker`: no
//! reload, build or start in flight, every instance online, waiting for its restart,
//! errored or stopped, the
//! ecosystem file as hotrun last read it), what it hands on (`freeze`, once the output
//! readers have given their pipes back), and taking it over in the new image (`adopt`).

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::restart::History;
use super::runs::{PipeReader, RunIo};
use super::slot::{Phase, ReadyBy, Run};
use super::{LastReload, Supervisor};
use crate::control::protocol::Response;
use crate::logs::Stream;
use crate::process::reaper::Exit;
use crate::upgrade::state::{
    SavedApp, SavedExit, SavedGroup, SavedGuard, SavedPhase, SavedPipe, SavedReload, SavedRun,
    SavedSlot, State, FORMAT,
};

/// The pipes the stopped readers gave back: per run serial and stream, the pipe and
/// what was read from it and not yet written.
pub(super) type Pipes = HashMap<(u64, Stream), (OwnedFd, Vec<u8>)>;

/// How long an upgrade waits for a reload, a build or a start in flight to end.
const WAIT: Duration = Duration::from_secs(30);

/// A `hotrun upgrade` (or SIGUSR2) waiting for a moment it can run.
pub(super) struct Ask {
    pub binary: Option<std::path::PathBuf>,
    pub refuse: u8,
    pub reply: Option<oneshot::Sender<Response>>,
    pub since: Instant,
}

impl Ask {
    /// Tells the asker (if any) and the log.
    pub(super) fn answer(self, logs: &mut crate::logs::LogSink, response: Response) {
        if let Response::Failed(why) = &response {
            logs.say(&format!("upgrade not done: {why}"));
        }
        if let Some(reply) = self.reply {
            let _ = reply.send(response);
        }
    }
}

/// What the event loop holds that the state names.
pub(super) struct Held {
    pub control_fd: RawFd,
    pub http_fd: Option<RawFd>,
    pub refuse: u8,
}

impl Supervisor {
    /// An upgrade asked for: refused at once when the ecosystem file changed since it
    /// was read (the new binary must read what runs); otherwise it runs as soon as
    /// nothing is in flight (`upgrade_due`).
    pub(super) fn ask_upgrade(
        &mut self,
        binary: Option<std::path::PathBuf>,
        refuse: u8,
        reply: Option<oneshot::Sender<Response>>,
        now: Instant,
    ) {
        let ask = Ask {
            binary,
            refuse,
            reply,
            since: now,
        };
        if self.upgrade_ask.is_some() {
            return ask.answer(&mut self.logs, Response::err("an upgrade already waits"));
        }
        if let Some(why) = self.file_changed() {
            let msg = format!(
                "the ecosystem file changed since hotrun read it ({why}): reload first (hotrun reload), then upgrade"
            );
            return ask.answer(&mut self.logs, Response::err(msg));
        }
        self.upgrade_ask = Some(ask);
    }

    /// The upgrade to run now, if one waits and nothing is in flight; one that has
    /// waited `WAIT` is refused with what it waited for.
    pub(super) fn upgrade_due(&mut self, now: Instant) -> Option<Ask> {
        let since = self.upgrade_ask.as_ref()?.since;
        match self.upgrade_blocker() {
            None => self.upgrade_ask.take(),
            Some(why) if now >= since + WAIT => {
                let ask = self.upgrade_ask.take()?;
                let msg = format!(
                    "{why}, still after {} s: run hotrun upgrade again once it is done",
                    WAIT.as_secs()
                );
                ask.answer(&mut self.logs, Response::err(msg));
                None
            }
            Some(_) => None,
        }
    }

    /// When the loop looks again at a waiting upgrade.
    pub(super) fn upgrade_deadline(&self, now: Instant) -> Option<Instant> {
        self.upgrade_ask
            .as_ref()
            .map(|_| now + Duration::from_millis(20))
    }

    /// Why an upgrade cannot run now (said to the user), if it cannot.
    pub(super) fn upgrade_blocker(&self) -> Option<String> {
        if self.shutdown != super::Shutdown::Running || self.stop_at.is_some() {
            return Some("hotrun is stopping".into());
        }
        if !self.builds.is_empty() || !self.probe_children.is_empty() {
            return Some("a build or an exec probe runs".into());
        }
        if !self.unannounced.is_empty() {
            return Some("a failed reload waits for its instance's last output".into());
        }
        for (a, app) in self.apps.iter().enumerate() {
            let name = &app.plan.name;
            if !matches!(app.reload, super::state::Reload::Idle) || app.queue.in_flight() {
                return Some(format!("{name}: a reload is in flight"));
            }
            if app.window.deadline().is_some() {
                return Some(format!("{name}: a file change waits for its reload"));
            }
            for (s, slot) in app.slots.iter().enumerate() {
                let settled = matches!(
                    slot.phase,
                    Phase::Pending { .. }
                        | Phase::Online { .. }
                        | Phase::Errored { .. }
                        | Phase::Stopped { .. }
                );
                if !settled || slot.surplus || !slot.retiring.is_empty() {
                    return Some(format!("{} is starting or stopping", self.label(a, s)));
                }
            }
        }
        None
    }

    /// What a reload would change now (the ecosystem file changed since it was read):
    /// an upgrade is refused then, so that the new binary reads what runs.
    pub(super) fn file_changed(&self) -> Option<String> {
        let source = self.source.as_ref()?;
        let plan = match source.load() {
            Ok((plan, _)) => plan,
            Err(e) => return Some(format!("the ecosystem file does not load: {e}")),
        };
        let live: Vec<&super::AppState> = self.apps.iter().filter(|a| !a.removed).collect();
        let mut changed: Vec<String> = live
            .iter()
            .filter_map(
                |app| match plan.apps.iter().find(|p| p.name == app.plan.name) {
                    None => Some(format!("{} is gone from it", app.plan.name)),
                    Some(new) => {
                        let what = super::changes::describe(&app.plan, new);
                        (!what.is_empty())
                            .then(|| format!("{}: {}", app.plan.name, what.join("; ")))
                    }
                },
            )
            .collect();
        changed.extend(
            plan.apps
                .iter()
                .filter(|p| !live.iter().any(|a| a.plan.name == p.name))
                .map(|p| format!("{} is new in it", p.name)),
        );
        (!changed.is_empty()).then(|| changed.join(", "))
    }

    /// Asks every output reader to stop at its next line boundary.
    pub(super) fn stop_readers(&mut self) -> Vec<(u64, PipeReader)> {
        let mut stopped = Vec::new();
        for (&serial, io) in self.runs.iter_mut() {
            for mut r in io.readers.drain(..) {
                r.stop();
                stopped.push((serial, r));
            }
        }
        stopped
    }

    /// Reads the pipes again (an upgrade that did not happen after all).
    pub(super) fn resume_readers(&mut self, pipes: Pipes) {
        for ((serial, stream), (fd, pending)) in pipes {
            let Some(io) = self.runs.get(&serial) else {
                continue;
            };
            let (a, id) = (io.app, self.apps[io.app].slots[io.slot].id);
            if let Some(r) = self.read_pipe(serial, a, id, stream, fd, pending) {
                if let Some(io) = self.runs.get_mut(&serial) {
                    io.readers.push(r);
                }
            }
        }
    }

    /// The state to hand on (the pipes' descriptors stay open in `pipes`).
    pub(super) fn freeze(&self, pipes: &Pipes, held: &Held, now: Instant) -> State {
        use std::os::fd::AsRawFd;
        let pipe = |serial: u64, stream: Stream| {
            pipes.get(&(serial, stream)).map(|(fd, pending)| SavedPipe {
                fd: fd.as_raw_fd(),
                pending: pending.clone(),
            })
        };
        let apps = self
            .apps
            .iter()
            .filter(|a| !a.removed)
            .map(|app| SavedApp {
                name: app.plan.name.clone(),
                ports: app.ports.clone(),
                reloads: app.reloads,
                last_reload: app.last_reload.as_ref().map(|l| SavedReload {
                    trigger: l.trigger.to_string(),
                    ok: l.ok,
                    at: l.at.to_rfc3339(),
                }),
                slots: app.slots.iter().map(|s| saved_slot(s, now)).collect(),
            })
            .collect();
        let runs = self
            .runs
            .iter()
            .map(|(&serial, io)| SavedRun {
                serial,
                app: self.apps[io.app].plan.name.clone(),
                slot: self.apps[io.app].slots[io.slot].id,
                member: io.member.clone(),
                held: io.held.clone(),
                ipc_fd: io.ipc.as_raw_fd(),
                stdout: pipe(serial, Stream::Out),
                stderr: pipe(serial, Stream::Err),
                notify: io
                    .notify
                    .as_ref()
                    .map(|n| (n.path.clone(), n.fd.as_raw_fd())),
                stderr_tail: io.stderr_tail().lines(),
            })
            .collect();
        State {
            format: FORMAT,
            from_version: env!("CARGO_PKG_VERSION").to_string(),
            refuse: held.refuse,
            control_fd: held.control_fd,
            http_fd: held.http_fd,
            guard: self
                .guard
                .as_ref()
                .and_then(|g| g.pipe_fd().map(|fd| SavedGuard { pid: g.pid, fd })),
            groups: self
                .listeners
                .saved()
                .into_iter()
                .map(|(addr, members)| SavedGroup { addr, members })
                .collect(),
            apps,
            runs,
            next_serial: self.next_serial,
            next_lane: self.next_lane,
            next_pm_id: self.next_pm_id,
        }
    }

    /// The new image's start: what the old hotrun ran is taken over, exits that came
    /// during the exec are reaped, and the upgrade is said (`refused`: this binary is the
    /// old one again, the new one did not take the state).
    pub(super) fn took_over(&mut self, state: State, refused: Option<String>, now: Instant) {
        let from = state.from_version.clone();
        let (runs, sockets) = (
            state.runs.len(),
            state.groups.iter().map(|g| g.members.len()).sum::<usize>(),
        );
        self.adopt(state, now);
        self.on_reaped(crate::process::reaper::reap());
        let version = env!("CARGO_PKG_VERSION").to_string();
        let message = match &refused {
            None => format!(
                "upgraded from hotrun {from} to {version}: {runs} instance(s) and {sockets} socket(s) taken over"
            ),
            Some(why) => format!(
                "the new binary refused the upgrade ({why}); hotrun {version} runs on with every instance"
            ),
        };
        self.upgraded = Some(crate::control::protocol::UpgradeStatus {
            at: chrono::Local::now().to_rfc3339(),
            from: from.clone(),
            ok: refused.is_none(),
            refused: refused.clone(),
        });
        let step = crate::control::protocol::ReloadStep::Upgraded {
            from,
            version,
            refused,
        };
        self.emit(None, None, step, message);
    }

    /// Takes over what the old hotrun ran: the plan read again has every app of the state
    /// with as many instances (`upgrade::fits`, checked before).
    pub(super) fn adopt(&mut self, state: State, now: Instant) {
        for app in state.apps {
            let Some(a) = self.apps.iter().position(|a| a.plan.name == app.name) else {
                continue;
            };
            let st = &mut self.apps[a];
            // Ports its instances asked for: they report that they listen (see ports.rs).
            let declared = super::ports::declared_ports(&st.plan);
            if app.ports.iter().any(|p| !declared.contains(p)) {
                st.settings.expect_listen = super::ports::node_like(&st.plan);
            }
            st.ports = app.ports;
            st.reloads = app.reloads;
            st.last_reload = app.last_reload.map(|l| LastReload {
                trigger: super::rollout::Trigger::static_name(&l.trigger),
                ok: l.ok,
                at: chrono::DateTime::parse_from_rfc3339(&l.at)
                    .map(|t| t.with_timezone(&chrono::Local))
                    .unwrap_or_else(|_| chrono::Local::now()),
            });
            for (slot, saved) in st.slots.iter_mut().zip(app.slots) {
                slot.id = saved.id;
                slot.pm_id = saved.pm_id;
                slot.lane = saved.lane;
                slot.reloads = saved.reloads;
                slot.history = History {
                    restarts: saved.restarts,
                    short_runs: saved.short_runs,
                    backoff: saved.backoff_ms.map(Duration::from_millis),
                };
                slot.phase = adopted_phase(saved.phase, now);
            }
            // Log files named by pm_id keep their names.
            let base = self.apps[a].slots.first().map_or(0, |s| s.pm_id);
            self.logs.set_app(a, &self.apps[a].plan, base);
        }
        for run in state.runs {
            self.adopt_run(run, now);
        }
        self.next_serial = self.next_serial.max(state.next_serial);
        self.next_lane = self.next_lane.max(state.next_lane);
        self.next_pm_id = self.next_pm_id.max(state.next_pm_id);
        self.sync_live_sockets();
    }

    fn adopt_run(&mut self, saved: SavedRun, now: Instant) {
        let Some(a) = self.apps.iter().position(|a| a.plan.name == saved.app) else {
            return;
        };
        let Some(s) = self.apps[a].slots.iter().position(|s| s.id == saved.slot) else {
            return;
        };
        let serial = saved.serial;
        let Some(run) = self.apps[a].slots[s].phase.run().copied() else {
            return;
        };
        // SAFETY (each from_raw_fd below): the numbers are the state's, descriptors the
        // old hotrun kept open across the exec for this run; nothing else owns them.
        let ipc = unsafe { std::os::unix::net::UnixStream::from_raw_fd(saved.ipc_fd) };
        if let Ok(reader) = ipc.try_clone() {
            self.read_ipc(serial, reader);
        }
        let notify = saved.notify.and_then(|(path, fd)| {
            let sock = unsafe { std::os::unix::net::UnixDatagram::from_raw_fd(fd) };
            sock.set_nonblocking(true).ok()?;
            let sock = tokio::net::UnixDatagram::from_std(sock).ok()?;
            self.follow_notify(serial, path, sock)
        });
        let id = self.apps[a].slots[s].id;
        let readers = [(Stream::Out, saved.stdout), (Stream::Err, saved.stderr)]
            .into_iter()
            .filter_map(|(stream, p)| {
                let p = p?;
                let fd = unsafe { OwnedFd::from_raw_fd(p.fd) };
                self.read_pipe(serial, a, id, stream, fd, p.pending)
            })
            .collect();
        let plan = &self.apps[a].plan;
        let (member, held) = (saved.member, saved.held);
        let mut io = RunIo::new((a, s), plan, member, held, ipc, notify, readers, now);
        for line in saved.stderr_tail {
            io.remember_stderr(line.as_bytes());
        }
        self.runs.insert(serial, io);
        self.pids.insert(run.pid, serial);
    }
}

fn saved_exit(e: Exit) -> SavedExit {
    match e {
        Exit::Code(c) => SavedExit::Code(c),
        Exit::Signal(s) => SavedExit::Signal(s as i32),
    }
}

fn exit_of(e: SavedExit) -> Exit {
    match e {
        SavedExit::Code(c) => Exit::Code(c),
        SavedExit::Signal(n) => nix::sys::signal::Signal::try_from(n)
            .map(Exit::Signal)
            .unwrap_or(Exit::Code(128 + n)),
    }
}

fn saved_slot(slot: &super::SlotState, now: Instant) -> SavedSlot {
    let phase = match &slot.phase {
        Phase::Pending { at } => SavedPhase::Pending {
            at_unix_ms: unix_ms() + at.saturating_duration_since(now).as_millis() as u64,
        },
        Phase::Online { run, ready_by } => SavedPhase::Online {
            serial: run.serial,
            pid: run.pid,
            started_unix_ms: unix_ms()
                .saturating_sub(now.saturating_duration_since(run.started).as_millis() as u64),
            ready_by: ready_by.as_str().to_string(),
        },
        Phase::Errored { exit } => SavedPhase::Errored {
            exit: saved_exit(*exit),
        },
        // The blocker lets only settled phases through: anything else is stopped.
        Phase::Stopped { exit } => SavedPhase::Stopped {
            exit: exit.map(saved_exit),
        },
        _ => SavedPhase::Stopped { exit: None },
    };
    SavedSlot {
        id: slot.id,
        pm_id: slot.pm_id,
        lane: slot.lane,
        reloads: slot.reloads,
        restarts: slot.history.restarts,
        short_runs: slot.history.short_runs,
        backoff_ms: slot.history.backoff.map(|d| d.as_millis() as u64),
        phase,
    }
}

/// The wall clock in ms since the epoch (what a state's times are in).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn adopted_phase(saved: SavedPhase, now: Instant) -> Phase {
    match saved {
        SavedPhase::Pending { at_unix_ms } => Phase::Pending {
            at: now + Duration::from_millis(at_unix_ms.saturating_sub(unix_ms())),
        },
        SavedPhase::Online {
            serial,
            pid,
            started_unix_ms,
            ready_by,
        } => Phase::Online {
            run: Run {
                pid,
                serial,
                started: now
                    .checked_sub(Duration::from_millis(
                        unix_ms().saturating_sub(started_unix_ms),
                    ))
                    .unwrap_or(now),
            },
            ready_by: ReadyBy::parse(&ready_by).unwrap_or(ReadyBy::Uptime),
        },
        SavedPhase::Errored { exit } => Phase::Errored {
            exit: exit_of(exit),
        },
        SavedPhase::Stopped { exit } => Phase::Stopped {
            exit: exit.map(exit_of),
        },
    }
}

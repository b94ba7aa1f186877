//! Runs: starting one process for a slot with everything hotrun hands it (shared sockets,
//! IPC channel, NOTIFY_SOCKET, the preload module), reading what it says (output lines,
//! IPC messages, notify datagrams), and forgetting it when it is gone.

use std::collections::VecDeque;

use crate::sockets::ListenAddr;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use tokio::net::unix::pipe;
use tokio::net::UnixDatagram;
use tokio::task::JoinHandle;

use super::ports::{bind_error, listen_fds_json};
use super::slot::{ReadyBy, Run};
use super::{Event, Role, Supervisor};
use crate::logs::{reader, Stream};
use crate::process::spawn::SpawnRequest;
use crate::process::tree;

/// How old the index of detached descendants may be when it is used.
const TREE_SCAN: std::time::Duration = std::time::Duration::from_millis(25);
use crate::sockets::handle;
use crate::sockets::reuseport::Member;

/// How many of its last stderr lines a run keeps, for the reason of a failed reload.
const STDERR_TAIL: usize = 5;

/// A run's last stderr lines (`STDERR_TAIL` of them), for the reason of a failed reload.
#[derive(Debug, Clone, Default)]
pub(super) struct StderrTail(VecDeque<String>);

impl StderrTail {
    pub fn push(&mut self, line: &[u8]) {
        if self.0.len() == STDERR_TAIL {
            self.0.pop_front();
        }
        self.0.push_back(String::from_utf8_lossy(line).into_owned());
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

/// What the loop keeps about one run besides its phase.
pub(super) struct RunIo {
    pub app: usize,
    pub slot: usize,
    /// Its slot's socket on each shared port.
    pub(super) member: Member,
    /// The ports whose socket (`member`'s) it holds: passed at its start, or handed
    /// over when it listened. A socket a process holds stays open whatever hotrun does.
    pub(super) held: Vec<ListenAddr>,
    /// hotrun's end of the IPC channel (for messages and socket handles).
    pub(super) ipc: StdUnixStream,
    pub(super) notify: Option<Notify>,
    stderr_tail: StderrTail,
    /// Its output pipes' readers (stdout, stderr), while they read.
    pub(super) readers: Vec<PipeReader>,
    /// Its readiness probe, for an app with `readiness_probe`.
    pub(super) probe: Option<super::probes::ProbeState>,
    /// Its liveness probe, for an app with `liveness_probe`.
    pub(super) liveness: Option<super::probes::LiveState>,
}

/// The notify socket of a run (systemd's protocol): its path, its reader, and a
/// descriptor of it that an upgrade hands on.
pub(super) struct Notify {
    pub(super) path: PathBuf,
    task: JoinHandle<()>,
    pub(super) fd: OwnedFd,
}

/// A task reading one output pipe of a run, and how to stop it (an upgrade takes the
/// pipe back, with what was read from it and not yet written).
pub(super) struct PipeReader {
    pub(super) stream: Stream,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(super) task: JoinHandle<Option<(OwnedFd, Vec<u8>)>>,
}

impl PipeReader {
    /// Asks it to stop at the next line boundary; `task` then gives the pipe back.
    pub(super) fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl RunIo {
    /// The I/O of a run of app `a`'s slot `s` (started here, or by an upgrade's old
    /// hotrun); its probes start now.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        (a, s): (usize, usize),
        plan: &crate::plan::AppPlan,
        member: Member,
        held: Vec<ListenAddr>,
        ipc: StdUnixStream,
        notify: Option<Notify>,
        readers: Vec<PipeReader>,
        now: Instant,
    ) -> RunIo {
        RunIo {
            app: a,
            slot: s,
            member,
            held,
            ipc,
            notify,
            stderr_tail: StderrTail::default(),
            readers,
            probe: plan
                .readiness_probe
                .as_ref()
                .map(|p| super::probes::ProbeState::new(now, p.initial_delay)),
            liveness: plan
                .liveness_probe
                .as_ref()
                .map(|p| super::probes::LiveState::new(now, p.initial_delay)),
        }
    }

    pub fn send_message(&self, msg: &Value) -> io::Result<()> {
        handle::send_message(&self.ipc, msg)
    }

    /// Which of its slot's sockets this run uses.
    pub fn lane(&self) -> u64 {
        self.member.lane
    }

    pub fn remember_stderr(&mut self, line: &[u8]) {
        self.stderr_tail.push(line);
    }

    pub fn stderr_tail(&self) -> &StderrTail {
        &self.stderr_tail
    }
}

impl Supervisor {
    /// Starts a process for slot `s` of app `a`: the slot's instance on the slot's
    /// sockets, or a reload's successor on sockets of its own.
    pub(super) fn spawn_run(
        &mut self,
        a: usize,
        s: usize,
        role: Role,
        now: Instant,
    ) -> Result<Run, String> {
        let serial = self.next_serial;
        self.next_serial += 1;
        let lane = match role {
            Role::Successor => {
                self.next_lane += 1;
                self.next_lane - 1
            }
            _ => self.apps[a].slots[s].lane,
        };
        let app = &self.apps[a];
        let slot = &app.slots[s];
        let member = Member::lane(&app.plan.name, slot.id, lane);
        // A successor may be a new version that listens elsewhere: it gets the declared
        // ports, and asks for the others when it listens. Any other start gets every port
        // the app uses.
        let ports = match role {
            Role::Successor => super::ports::declared_ports(&app.plan),
            _ => app.ports.clone(),
        };
        let fds = self.sockets_of(&member, &ports)?;
        let app = &self.apps[a];
        let slot = &app.slots[s];
        let notify_path = self.runtime.notify_socket(serial);
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path).ok();
        let env = self.start_env(a, serial, &ports, notify.as_ref().map(|_| &*notify_path));
        let req = SpawnRequest {
            app: &app.plan,
            id: slot.id,
            pm_id: slot.pm_id,
            env,
            fds,
            listen_pid: !app.plan.listen.is_empty(),
        };
        let child = match self.fx.spawn(&req) {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_file(&notify_path);
                let msg = if !app.plan.cwd.is_dir() {
                    format!("its cwd {} is not a folder", app.plan.cwd.display())
                } else {
                    format!("{}: {e}", app.plan.command.program)
                };
                let label = self.label(a, s);
                self.logs.say(&format!("{label} could not start: {msg}"));
                return Err(msg);
            }
        };
        let run = Run {
            pid: child.pid,
            serial,
            started: now,
        };
        let notify = notify.map(|sock| (notify_path, sock));
        self.follow_run(a, s, run, child, member, ports, notify, now);
        Ok(run)
    }

    /// `member`'s socket of each of `ports` (bound now for a new slot or lane), as fds to
    /// pass.
    fn sockets_of(
        &mut self,
        member: &Member,
        ports: &[ListenAddr],
    ) -> Result<Vec<OwnedFd>, String> {
        ports
            .iter()
            .map(|addr| {
                self.listeners
                    .get_or_bind(*addr, member)
                    .and_then(|fd| fd.try_clone_to_owned())
                    .map_err(|e| format!("cannot listen on {addr}: {}", bind_error(&e)))
            })
            .collect()
    }

    /// What hotrun adds to an instance's environment: its marker (run serial and this
    /// hotrun's control socket), the sockets it gets, the preload, the notify socket and
    /// systemd's LISTEN_* for `listen`.
    fn start_env(
        &self,
        a: usize,
        serial: u64,
        ports: &[ListenAddr],
        notify: Option<&Path>,
    ) -> Vec<(String, String)> {
        let app = &self.apps[a];
        let mut env = vec![
            ("HOTRUN_TOKEN".to_string(), serial.to_string()),
            (
                "HOTRUN_CONTROL".to_string(),
                self.runtime.control_socket().display().to_string(),
            ),
            ("HOTRUN_LISTEN_FDS".to_string(), listen_fds_json(ports)),
            (
                "NODE_OPTIONS".to_string(),
                node_options(app, &self.runtime.preload()),
            ),
        ];
        if let Some(path) = notify {
            env.push(("NOTIFY_SOCKET".into(), path.display().to_string()));
        }
        if !app.plan.listen.is_empty() {
            env.push(("LISTEN_FDS".into(), app.plan.listen.len().to_string()));
            let names: Vec<String> = app.plan.listen.iter().map(|l| l.to_string()).collect();
            env.push(("LISTEN_FDNAMES".into(), names.join(":")));
        }
        env
    }

    /// Follows a started run: its output, IPC channel and notify socket are read, its
    /// probes start, the guard knows its pid.
    #[allow(clippy::too_many_arguments)]
    fn follow_run(
        &mut self,
        a: usize,
        s: usize,
        run: Run,
        child: crate::process::spawn::Spawned,
        member: Member,
        held: Vec<ListenAddr>,
        notify: Option<(PathBuf, UnixDatagram)>,
        now: Instant,
    ) {
        let serial = run.serial;
        if let Some(g) = self.guard.as_mut() {
            g.add(child.pid);
        }
        let id = self.apps[a].slots[s].id;
        let readers = [
            (Stream::Out, OwnedFd::from(child.stdout)),
            (Stream::Err, OwnedFd::from(child.stderr)),
        ]
        .into_iter()
        .filter_map(|(stream, fd)| self.read_pipe(serial, a, id, stream, fd, Vec::new()))
        .collect();
        if let Ok(reader) = child.ipc.try_clone() {
            self.read_ipc(serial, reader);
        }
        let notify = notify.and_then(|(path, sock)| self.follow_notify(serial, path, sock));
        let plan = &self.apps[a].plan;
        let io = RunIo::new((a, s), plan, member, held, child.ipc, notify, readers, now);
        self.runs.insert(serial, io);
        self.pids.insert(child.pid, serial);
    }

    /// An output pipe of run `serial` is read to its end (or its reader was stopped).
    pub(super) fn pipe_closed(&mut self, serial: u64) {
        if let Some(n) = self.run_pipes.get_mut(&serial) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.run_pipes.remove(&serial);
                self.output_ended(serial);
            }
        }
    }

    /// Reads an output pipe of a run as lines, `pending` first (what an upgrade's old
    /// hotrun had read from it and not yet written).
    pub(super) fn read_pipe(
        &mut self,
        serial: u64,
        app: usize,
        id: u32,
        stream: Stream,
        fd: OwnedFd,
        pending: Vec<u8>,
    ) -> Option<PipeReader> {
        let rx = match pipe::Receiver::from_owned_fd(fd) {
            Ok(rx) => rx,
            Err(e) => {
                self.logs
                    .say(&format!("cannot read an instance's output: {e}"));
                return None;
            }
        };
        use tokio::io::AsyncReadExt;
        let input = std::io::Cursor::new(pending).chain(rx);
        *self.run_pipes.entry(serial).or_default() += 1;
        let tx = self.events.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Only an upgrade's explicit stop: a run forgotten (its reader dropped) still
            // has its pipe read to the end.
            let stopped = async {
                if stopped.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            let left = reader::read_lines_until(input, stopped, |text| {
                let tx = tx.clone();
                async move {
                    let line = Event::Line {
                        serial,
                        app,
                        id,
                        stream,
                        text,
                    };
                    tx.send(line).await.is_ok()
                }
            })
            .await;
            let _ = tx.send(Event::PipeClosed { serial }).await;
            let (input, mut read) = left?;
            // What the reader took in, then what it had not taken of `pending` yet.
            let (cursor, rx) = input.into_inner();
            let unread = cursor.position() as usize;
            read.extend_from_slice(&cursor.into_inner()[unread..]);
            Some((rx.into_nonblocking_fd().ok()?, read))
        });
        Some(PipeReader {
            stream,
            stop: Some(stop),
            task,
        })
    }

    pub(super) fn read_ipc(&mut self, serial: u64, stream: StdUnixStream) {
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

    /// Follows a run's notify socket (a descriptor of it kept for an upgrade).
    pub(super) fn follow_notify(
        &mut self,
        serial: u64,
        path: PathBuf,
        sock: UnixDatagram,
    ) -> Option<Notify> {
        use std::os::fd::AsFd;
        let fd = sock.as_fd().try_clone_to_owned().ok()?;
        let task = self.read_notify(serial, sock);
        Some(Notify { path, task, fd })
    }

    /// systemd's notify protocol: datagrams of `KEY=VALUE` lines; `READY=1` is ready.
    fn read_notify(&mut self, serial: u64, sock: UnixDatagram) -> JoinHandle<()> {
        let tx = self.events.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.lines().any(|l| l.trim() == "READY=1") {
                    let ev = Event::Ready {
                        serial,
                        by: ReadyBy::Notify,
                    };
                    if tx.send(ev).await.is_err() {
                        break;
                    }
                }
            }
        })
    }

    /// A message from an instance's IPC channel.
    pub(super) fn on_ipc(&mut self, serial: u64, msg: Value) {
        if msg == json!("ready") {
            return self.on_ready(serial, ReadyBy::Message);
        }
        match msg.get("hotrun").and_then(Value::as_str) {
            Some("listening") => self.on_ready(serial, ReadyBy::Listen),
            Some("listen") => self.hand_socket(serial, &msg),
            _ => {}
        }
    }

    /// The index of this hotrun's processes outside their groups, taken again when it is
    /// older than `TREE_SCAN` (one pass over /proc answers for every instance).
    fn tree_index(&mut self) -> &tree::Index {
        let stale = self
            .tree_index
            .as_ref()
            .is_none_or(|i| self.fx.now().saturating_duration_since(i.taken) >= TREE_SCAN);
        if stale {
            self.tree_index = Some(self.fx.scan_tree(&self.runtime.control_socket()));
        }
        self.tree_index.as_ref().expect("just taken")
    }

    /// `sig` to the run's whole tree: its process group and the descendants that left it.
    pub(super) fn signal_tree(&mut self, run: Run, sig: nix::sys::signal::Signal) {
        self.fx.signal_group(run.pid, sig);
        let escaped = self.tree_index().escaped(run.serial, run.pid);
        self.fx.signal_pids(&escaped, sig);
    }

    /// Before a tick decides whether stopping instances are gone: a fresh enough index.
    pub(super) fn index_trees_if_stopping(&mut self) {
        let stopping = self.apps.iter().flat_map(|a| &a.slots).any(|slot| {
            std::iter::once(&slot.phase)
                .chain(&slot.retiring)
                .any(|p| matches!(p, super::slot::Phase::Stopping { .. }))
        });
        if stopping {
            self.tree_index();
        }
    }

    /// Whether a stopping instance's tree still has a process (for other phases, whether
    /// its group has one: only a stop waits for the tree).
    pub(super) fn tree_alive(&self, phase: &super::slot::Phase) -> bool {
        match phase {
            super::slot::Phase::Stopping { run, .. } => {
                self.fx.group_alive(run.pid)
                    || self
                        .tree_index
                        .as_ref()
                        .is_some_and(|i| !i.escaped(run.serial, run.pid).is_empty())
            }
            _ => phase.run().is_some_and(|r| self.fx.group_alive(r.pid)),
        }
    }

    /// The run is gone for good: drop its I/O and tell the guard.
    pub(super) fn forget(&mut self, run: Run) {
        if let Some(io) = self.runs.remove(&run.serial) {
            if let Some(n) = io.notify {
                n.task.abort();
                let _ = std::fs::remove_file(n.path);
            }
        }
        self.pids.remove(&run.pid);
        if let Some(g) = self.guard.as_mut() {
            g.remove(run.pid);
        }
    }
}

/// The app's NODE_OPTIONS (its own, else the inherited one) plus hotrun's preload.
fn node_options(app: &super::AppState, preload: &Path) -> String {
    let own = app
        .plan
        .env
        .get("NODE_OPTIONS")
        .cloned()
        .or_else(|| std::env::var("NODE_OPTIONS").ok())
        .unwrap_or_default();
    let path = preload.display().to_string();
    let require = if path.contains(' ') {
        format!("--require \"{path}\"")
    } else {
        format!("--require {path}")
    };
    format!("{own} {require}").trim().to_string()
}

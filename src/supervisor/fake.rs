//! A fake world for the glue tests: `Effects` that start no process. Each spawn gets a
//! made-up pid, real pipes and an IPC socket pair (so the runner's readers work as with a
//! process), and a record; signals are recorded and act as a process would take them (an
//! instance exits on its stop signal unless its app is "stubborn"; SIGKILL always kills);
//! the clock moves only when the test moves it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{ChildStderr, ChildStdout};
use std::rc::Rc;
use std::time::Instant;

use nix::sys::signal::Signal;

use super::effects::Effects;
use crate::memory::Usage;
use crate::plan::AppPlan;
use crate::process::reaper::Exit;
use crate::process::spawn::{SpawnRequest, Spawned, SpawnedBuild};
use crate::process::tree;

/// What a fake process is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `version`: the plan's env `VERSION`, to tell which plan started it.
    Instance {
        app: String,
        id: u32,
        version: Option<String>,
    },
    Build {
        app: String,
    },
}

/// Where a fake process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    Running,
    /// Exited, not yet reaped (its group still counts as alive, as a zombie's does).
    Exited(Exit),
    Reaped,
}

pub struct Proc {
    pub kind: Kind,
    pub life: Life,
    pub started: Instant,
    /// Every signal sent to its group, in order.
    pub signals: Vec<Signal>,
    /// The other ends of its pipes and IPC channel, open while the "process" lives.
    _ends: Vec<OwnedFd>,
    _ipc: Option<UnixStream>,
}

#[derive(Default)]
pub struct World {
    pub now: Option<Instant>,
    pub next_pid: i32,
    pub procs: BTreeMap<i32, Proc>,
    /// Apps whose instances ignore their stop signal (only SIGKILL ends them).
    pub stubborn: HashSet<String>,
    /// Resident bytes per pid (0 when unset).
    pub rss: HashMap<i32, u64>,
    /// Instances that have read the request of every connection they accepted (the
    /// others are taken to wait for one: they drain for their whole `drain_delay`).
    pub settled: HashSet<i32>,
}

impl World {
    pub fn now(&self) -> Instant {
        self.now.expect("the clock is set")
    }

    /// Pids of `app`'s instances in the order they started.
    pub fn instances(&self, app: &str) -> Vec<i32> {
        self.procs
            .iter()
            .filter(|(_, p)| matches!(&p.kind, Kind::Instance { app: a, .. } if a == app))
            .map(|(&pid, _)| pid)
            .collect()
    }

    /// Pids of `app`'s instances still running.
    pub fn running(&self, app: &str) -> Vec<i32> {
        self.instances(app)
            .into_iter()
            .filter(|pid| self.procs[pid].life == Life::Running)
            .collect()
    }

    /// Pids of `app`'s builds in the order they started.
    pub fn builds(&self, app: &str) -> Vec<i32> {
        self.procs
            .iter()
            .filter(|(_, p)| matches!(&p.kind, Kind::Build { app: a } if a == app))
            .map(|(&pid, _)| pid)
            .collect()
    }

    /// The process ends by itself (a crash, a build's exit).
    pub fn exit(&mut self, pid: i32, exit: Exit) {
        let p = self.procs.get_mut(&pid).expect("a known pid");
        if p.life == Life::Running {
            p.life = Life::Exited(exit);
        }
    }

    /// Exited processes the runner has not been told of; they count as reaped from now.
    pub fn reap(&mut self) -> Vec<(i32, Exit)> {
        let mut out = Vec::new();
        for (&pid, p) in &mut self.procs {
            if let Life::Exited(exit) = p.life {
                p.life = Life::Reaped;
                p._ends.clear();
                p._ipc = None;
                out.push((pid, exit));
            }
        }
        out
    }

    fn add(&mut self, kind: Kind, ipc: Option<UnixStream>) -> io::Result<(i32, OwnedFd, OwnedFd)> {
        let (out_r, out_w) = io::pipe()?;
        let (err_r, err_w) = io::pipe()?;
        self.next_pid += 1;
        let pid = 100_000 + self.next_pid;
        self.procs.insert(
            pid,
            Proc {
                kind,
                life: Life::Running,
                started: self.now(),
                signals: Vec::new(),
                _ends: vec![out_w.into(), err_w.into()],
                _ipc: ipc,
            },
        );
        Ok((pid, out_r.into(), err_r.into()))
    }
}

/// The fake effects; the test keeps a handle on the same world.
pub struct Fake(pub Rc<RefCell<World>>);

impl Effects for Fake {
    fn now(&self) -> Instant {
        self.0.borrow().now()
    }

    fn spawn(&mut self, req: &SpawnRequest<'_>) -> io::Result<Spawned> {
        let (ours, theirs) = UnixStream::pair()?;
        let kind = Kind::Instance {
            app: req.app.name.clone(),
            id: req.id,
            version: req.app.env.get("VERSION").cloned(),
        };
        let (pid, stdout, stderr) = self.0.borrow_mut().add(kind, Some(theirs))?;
        Ok(Spawned {
            pid,
            stdout: ChildStdout::from(stdout),
            stderr: ChildStderr::from(stderr),
            ipc: ours,
        })
    }

    fn spawn_build(&mut self, app: &AppPlan, _command: &str) -> io::Result<SpawnedBuild> {
        let kind = Kind::Build {
            app: app.name.clone(),
        };
        let (pid, stdout, stderr) = self.0.borrow_mut().add(kind, None)?;
        Ok(SpawnedBuild {
            pid,
            stdout: ChildStdout::from(stdout),
            stderr: ChildStderr::from(stderr),
        })
    }

    fn spawn_probe(
        &mut self,
        app: &AppPlan,
        _command: &str,
        _pid: i32,
        _id: u32,
    ) -> io::Result<i32> {
        let kind = Kind::Build {
            app: format!("{} probe", app.name),
        };
        Ok(self.0.borrow_mut().add(kind, None)?.0)
    }

    fn signal_group(&mut self, pgid: i32, sig: Signal) {
        let mut world = self.0.borrow_mut();
        let stubborn = match world.procs.get(&pgid).map(|p| &p.kind) {
            Some(Kind::Instance { app, .. }) => world.stubborn.contains(app),
            Some(Kind::Build { .. }) => true,
            None => return,
        };
        let p = world.procs.get_mut(&pgid).expect("just found");
        p.signals.push(sig);
        let obeys = sig == Signal::SIGKILL
            || (!stubborn && matches!(sig, Signal::SIGINT | Signal::SIGTERM));
        if p.life == Life::Running && obeys {
            p.life = Life::Exited(Exit::Signal(sig));
        }
    }

    fn signal_pids(&mut self, _pids: &[i32], _sig: Signal) {}

    fn group_alive(&self, pgid: i32) -> bool {
        self.0
            .borrow()
            .procs
            .get(&pgid)
            .is_some_and(|p| p.life != Life::Reaped)
    }

    fn group_usage(&self, pgids: &[i32]) -> Vec<Usage> {
        let world = self.0.borrow();
        pgids
            .iter()
            .map(|pid| Usage {
                rss_bytes: world.rss.get(pid).copied().unwrap_or(0),
                cpu: std::time::Duration::ZERO,
            })
            .collect()
    }

    fn scan_tree(&self, _control_socket: &Path) -> tree::Index {
        tree::Index::empty(self.now())
    }

    fn requests_pending(&self, pgid: i32, _ports: &[u16]) -> bool {
        !self.0.borrow().settled.contains(&pgid)
    }
}

//! What the runner does to the world, behind one small trait: start processes and builds,
//! signal process groups and stray descendants, ask whether a group still has a process,
//! read memory and CPU from /proc, ask the kernel whether a group's connections have had
//! their request read, and read the clock. `System` does it for real; the
//! supervisor's glue tests (`glue_tests.rs`) put a fake in its place that records every
//! effect and decides which processes live, so the glue is tested without processes.

use std::io;
use std::path::Path;
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::memory::{self, Usage};
use crate::plan::AppPlan;
use crate::process::spawn::{self, SpawnRequest, Spawned, SpawnedBuild};
use crate::process::{group, tree};
use crate::sockets::diag;

/// The runner's side effects.
pub(crate) trait Effects {
    /// Now, for every timer of the runner.
    fn now(&self) -> Instant;
    /// Starts one instance.
    fn spawn(&mut self, req: &SpawnRequest<'_>) -> io::Result<Spawned>;
    /// Starts an app's `build` command.
    fn spawn_build(&mut self, app: &AppPlan, command: &str) -> io::Result<SpawnedBuild>;
    /// Starts an `exec` probe of instance `pid` (slot `id`); its pid.
    fn spawn_probe(&mut self, app: &AppPlan, command: &str, pid: i32, id: u32) -> io::Result<i32>;
    /// `sig` to the process group led by `pgid`.
    fn signal_group(&mut self, pgid: i32, sig: Signal);
    /// `sig` to each of `pids` (descendants that left their group).
    fn signal_pids(&mut self, pids: &[i32], sig: Signal);
    /// Whether the group `pgid` still has a process (zombies included).
    fn group_alive(&self, pgid: i32) -> bool;
    /// Memory and CPU of each group, in order.
    fn group_usage(&self, pgids: &[i32]) -> Vec<Usage>;
    /// This hotrun's processes, wherever they are (see `process::tree`).
    fn scan_tree(&self, control_socket: &Path) -> tree::Index;
    /// Whether a process of group `pgid` holds a connection of `ports` whose request it
    /// has not read yet, or that cannot be told (see `sockets::diag`).
    fn requests_pending(&self, pgid: i32, ports: &[u16]) -> bool;
}

/// The real effects.
pub(crate) struct System;

impl Effects for System {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn spawn(&mut self, req: &SpawnRequest<'_>) -> io::Result<Spawned> {
        spawn::spawn(req)
    }

    fn spawn_build(&mut self, app: &AppPlan, command: &str) -> io::Result<SpawnedBuild> {
        spawn::spawn_build(app, command)
    }

    fn spawn_probe(&mut self, app: &AppPlan, command: &str, pid: i32, id: u32) -> io::Result<i32> {
        spawn::spawn_probe(app, command, pid, id)
    }

    fn signal_group(&mut self, pgid: i32, sig: Signal) {
        group::signal(pgid, sig);
    }

    fn signal_pids(&mut self, pids: &[i32], sig: Signal) {
        tree::signal(pids, sig);
    }

    fn group_alive(&self, pgid: i32) -> bool {
        group::alive(pgid)
    }

    fn group_usage(&self, pgids: &[i32]) -> Vec<Usage> {
        memory::group_usage(pgids)
    }

    fn scan_tree(&self, control_socket: &Path) -> tree::Index {
        tree::Index::scan(control_socket)
    }

    fn requests_pending(&self, pgid: i32, ports: &[u16]) -> bool {
        diag::requests_pending(|| group::members(pgid), ports)
    }
}

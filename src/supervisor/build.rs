//! Build, then swap: an app's `build` command (hotrun's key; `sh -c` in its cwd, output
//! prefixed `name|build`) runs before its first start and before every reload. Only when
//! it exits 0 does the rolling reload begin; a failed or timed-out build (`build_timeout`)
//! keeps every old instance serving, says why (exit code, last lines), and fails the
//! reload. Reload requests during a build fold into one more build + reload after it.
//! File changes seen while the app's build runs (and in the 100 ms after it) are the
//! build's own writes and are dropped, so a build writing into watched paths never loops.

use std::collections::VecDeque;
use std::time::Instant;

use nix::sys::signal::Signal;
use tokio::net::unix::pipe;

use super::reloads::Failure;

use super::rollout::Trigger;
use super::slot::Input as SlotInput;
use super::{Event, Supervisor};
use crate::control::protocol::ReloadStep;
use crate::logs::{reader, Stream};
use crate::process::reaper::Exit;

/// How many of its last output lines a failed build shows.
const TAIL: usize = 10;
/// How long after a build's end a change is still taken as its own (its last writes).
const BUILD_ECHO: std::time::Duration = std::time::Duration::from_millis(20);

/// A build in progress.
pub(super) struct Build {
    pub pid: i32,
    pub started: Instant,
    pub deadline: Instant,
    pub tail: VecDeque<String>,
    pub timed_out: bool,
    /// Its pipes not yet read to the end (its last lines are part of the verdict).
    pub pipes_open: u8,
    /// How it exited, once it has; the verdict waits for its pipes (1 s at most).
    pub exit: Option<(Exit, Instant)>,
}

/// How long an exited build's output is waited for.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

impl Supervisor {
    /// Builds every app that has a `build`, before its first start.
    pub(super) fn start_initial_builds(&mut self, now: Instant) {
        for a in 0..self.apps.len() {
            if self.apps[a].plan.build.is_some() {
                self.start_build(a, None, now);
            }
        }
    }

    /// Whether app `a` waits for its first build (its slots must not start yet).
    pub(super) fn building_first(&self, a: usize) -> bool {
        self.apps[a].build.as_ref().is_some()
            && !matches!(self.apps[a].reload, super::state::Reload::Building { .. })
    }

    /// Starts app `a`'s build: before its first start (`reload` none), or as the first
    /// stage of the reload for `reload`.
    pub(super) fn start_build(&mut self, a: usize, reload: Option<Trigger>, now: Instant) {
        let app = self.apps[a].plan.clone();
        let Some(command) = app.build.clone() else {
            return;
        };
        if let Some(trigger) = reload {
            self.apps[a].reload = super::state::Reload::Building { trigger };
        }
        let name = app.name.clone();
        let step = ReloadStep::BuildStarted {
            command: command.clone(),
        };
        self.emit(Some(a), None, step, format!("{name}: build: {command}"));
        match self.fx.spawn_build(&app, &command) {
            Ok(child) => {
                if let Some(g) = self.guard.as_mut() {
                    g.add(child.pid);
                }
                self.builds.insert(child.pid, a);
                let timeout = self.apps[a].plan.build_timeout;
                self.apps[a].build = Some(Build {
                    pid: child.pid,
                    started: now,
                    deadline: now + timeout,
                    tail: VecDeque::new(),
                    timed_out: false,
                    pipes_open: 0,
                    exit: None,
                });
                self.read_build_pipe(a, Stream::Out, child.stdout.into());
                self.read_build_pipe(a, Stream::Err, child.stderr.into());
            }
            Err(e) => {
                self.apps[a].build = Some(Build {
                    pid: 0,
                    started: now,
                    deadline: now,
                    tail: VecDeque::new(),
                    timed_out: false,
                    pipes_open: 0,
                    exit: None,
                });
                self.build_done(a, Err(format!("cannot start sh: {e}")), now);
            }
        }
    }

    fn read_build_pipe(&mut self, app: usize, stream: Stream, fd: std::os::fd::OwnedFd) {
        let Ok(rx) = pipe::Receiver::from_owned_fd(fd) else {
            return;
        };
        if let Some(b) = self.apps[app].build.as_mut() {
            b.pipes_open += 1;
        }
        let tx = self.events.clone();
        tokio::spawn(async move {
            reader::read_lines(rx, |text| {
                let tx = tx.clone();
                async move {
                    tx.send(Event::BuildLine { app, stream, text })
                        .await
                        .is_ok()
                }
            })
            .await;
            let _ = tx.send(Event::BuildPipeClosed { app }).await;
        });
    }

    pub(super) fn on_build_line(&mut self, a: usize, stream: Stream, text: &[u8]) {
        self.logs.build_line(a, stream, text);
        if let Some(b) = self.apps[a].build.as_mut() {
            if b.tail.len() == TAIL {
                b.tail.pop_front();
            }
            b.tail.push_back(String::from_utf8_lossy(text).into_owned());
        }
    }

    /// One of the build's pipes reached its end.
    pub(super) fn on_build_pipe_closed(&mut self, a: usize, now: Instant) {
        if let Some(b) = self.apps[a].build.as_mut() {
            b.pipes_open = b.pipes_open.saturating_sub(1);
        }
        self.maybe_build_done(a, now);
    }

    /// The build's process exited; its verdict waits for the end of its output.
    pub(super) fn on_build_exit(&mut self, a: usize, exit: Exit, now: Instant) {
        let Some(b) = self.apps[a].build.as_mut() else {
            return;
        };
        b.exit = Some((exit, now));
        let pid = b.pid;
        if let Some(g) = self.guard.as_mut() {
            g.remove(pid);
        }
        // What it started goes with it.
        self.fx.signal_group(pid, Signal::SIGKILL);
        self.maybe_build_done(a, now);
    }

    /// Gives the verdict once the build has exited and its output is read (or waited for
    /// long enough).
    pub(super) fn maybe_build_done(&mut self, a: usize, now: Instant) {
        let Some(b) = self.apps[a].build.as_ref() else {
            return;
        };
        let Some((exit, exited)) = b.exit else {
            return;
        };
        if b.pipes_open > 0 && now < exited + DRAIN {
            return;
        }
        let took = exited.saturating_duration_since(b.started).as_millis();
        let result = match (b.timed_out, exit) {
            (true, _) => Err(format!(
                "timed out after {} ms (build_timeout)",
                self.apps[a].plan.build_timeout.as_millis()
            )),
            (false, Exit::Code(0)) => Ok(took),
            (false, exit) => Err(format!("exited with {exit} after {took} ms")),
        };
        self.build_done(a, result, now);
    }

    /// A build that is past its `build_timeout` is killed; an exited one whose output
    /// never ended gets its verdict.
    pub(super) fn check_build_timeouts(&mut self, now: Instant) {
        for a in 0..self.apps.len() {
            if let Some(b) = self.apps[a].build.as_mut() {
                if !b.timed_out && b.exit.is_none() && now >= b.deadline && b.pid > 0 {
                    b.timed_out = true;
                    let pid = b.pid;
                    self.fx.signal_group(pid, Signal::SIGKILL);
                }
            }
            self.maybe_build_done(a, now);
        }
    }

    /// When a build needs a look: its timeout, or the end of the wait for its output.
    pub(super) fn build_deadline(&self, a: usize) -> Option<Instant> {
        let b = self.apps[a].build.as_ref()?;
        match b.exit {
            Some((_, exited)) => Some(exited + DRAIN),
            None if !b.timed_out => Some(b.deadline),
            None => None,
        }
    }

    fn build_done(&mut self, a: usize, result: Result<u128, String>, now: Instant) {
        let Some(b) = self.apps[a].build.take() else {
            return;
        };
        self.builds.remove(&b.pid);
        // The build stage of a reload ends here (none for a first build).
        let reload = self.apps[a].reload.take_building();
        // Changes made while it ran are its own, whenever the watcher hands them over.
        self.apps[a].last_build = Some((b.started, now + BUILD_ECHO));
        let name = self.apps[a].plan.name.clone();
        if let Some(m) = &self.metrics {
            m.build_done(&name, result.is_ok());
        }
        let live = self.shutdown == super::Shutdown::Running && !self.apps[a].removed;
        if !live {
            // hotrun stops, or the app left the file: nothing starts.
            let why = if self.apps[a].removed {
                "the app was removed from the ecosystem file"
            } else {
                "hotrun is stopping"
            };
            self.abandon(a, reload, why, now);
            return;
        }
        match (result, reload) {
            (Ok(took), None) => {
                self.logs
                    .say(&format!("{name}: build done in {took} ms; starting"));
                // Slots waiting for the build start now; one whose old instance still
                // stops (the app was put back in the file meanwhile) keeps tracking it
                // to its end (SIGKILL at kill_timeout) and starts after it.
                for s in 0..self.apps[a].slots.len() {
                    self.apply(a, s, SlotInput::Start, now);
                }
            }
            (Ok(took), Some(trigger)) => {
                let message = format!("{name}: build done in {took} ms");
                let step = ReloadStep::BuildDone {
                    after_ms: took as u64,
                };
                self.emit(Some(a), None, step, message);
                if self.shutdown == super::Shutdown::Running {
                    self.start_rollout(a, trigger, now);
                } else {
                    self.abort_rollout(a, "hotrun is stopping", now);
                }
            }
            (Err(why), reload) => {
                let tail: Vec<String> = b.tail.into_iter().collect();
                let mut msg = format!("{name}: build failed: {why}");
                if !tail.is_empty() {
                    msg.push_str(&format!("; its last lines: {}", tail.join(" / ")));
                }
                let step = ReloadStep::BuildFailed {
                    reason: why,
                    last_lines: tail,
                };
                self.emit(Some(a), None, step, msg.clone());
                match reload {
                    Some(trigger) => {
                        let reason = msg.trim_start_matches(&format!("{name}: ")).to_string();
                        self.rollout_done(a, &trigger, Some(Failure::Build(reason)), now);
                    }
                    None => {
                        self.logs
                            .say(&format!("{name}: not started: its build failed"));
                        for s in 0..self.apps[a].slots.len() {
                            // Its old instance, if one still stops, has nothing after it.
                            self.apps[a].slots[s].restart_after_stop = false;
                            self.apply(a, s, SlotInput::GiveUp(Exit::Code(1)), now);
                        }
                        self.last_failure = Some(1);
                    }
                }
            }
        }
    }

    /// hotrun is stopping: builds are killed.
    pub(super) fn kill_builds(&mut self) {
        for a in 0..self.apps.len() {
            self.kill_build(a);
        }
    }

    /// Kills app `a`'s build, if one runs; its verdict still comes through its exit.
    pub(super) fn kill_build(&mut self, a: usize) {
        if let Some(b) = self.apps[a].build.as_mut() {
            b.timed_out = false;
            if b.pid > 0 {
                let pid = b.pid;
                self.fx.signal_group(pid, Signal::SIGKILL);
            }
        }
    }
}

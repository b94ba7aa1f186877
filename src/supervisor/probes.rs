//! Probes in the loop. Readiness: an instance of an app with `readiness_probe` is ready
//! only once a probe of its own socket passes, and after its own ready signal when it
//! gives one (that signal is held until then). This is the one gate every readiness goes
//! through (first start, restart, a reload's successor), because every ready signal
//! reaches the loop through `on_ready`. Readiness probes run every `period` from
//! `initial_delay` on, until one passes. Liveness: while an instance serves its slot, its
//! `liveness_probe` runs every `period`; `failure_threshold` failures in a row replace it
//! through the ready-gated path (its successor first) and fail a reload in flight; from
//! its first failure until a probe passes it gets no new connection. Probes are small
//! tasks; each result is kept for `status`.

use std::time::{Duration, Instant};

use super::rollout::{self, Trigger};
use super::slot::{Phase, ReadyBy};
use super::{Event, Role, Supervisor};
use crate::control::protocol::ProbeStatus;
use crate::probe::{self, ProbePlan, Target};

/// Which probe of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Readiness,
    Liveness,
}

/// When a probe of a run runs, and what it last found.
#[derive(Debug, Clone)]
struct Schedule {
    in_flight: bool,
    next_at: Instant,
    last: Option<ProbeStatus>,
}

impl Schedule {
    fn new(now: Instant, initial_delay: Duration) -> Schedule {
        Schedule {
            in_flight: false,
            next_at: now + initial_delay,
            last: None,
        }
    }

    /// A probe ends: its result is kept, the next one is due a `period` later.
    fn answered(&mut self, result: &Result<String, String>, now: Instant, period: Duration) {
        self.in_flight = false;
        self.next_at = now + period;
        self.last = Some(ProbeStatus {
            ok: result.is_ok(),
            detail: match result {
                Ok(said) | Err(said) => said.clone(),
            },
            at: chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        });
    }
}

/// A run's readiness probe.
#[derive(Debug, Clone)]
pub(super) struct ProbeState {
    /// Its own ready signal, held until a probe passes.
    held: Option<ReadyBy>,
    passed: bool,
    schedule: Schedule,
}

impl ProbeState {
    pub fn new(now: Instant, initial_delay: Duration) -> ProbeState {
        ProbeState {
            held: None,
            passed: false,
            schedule: Schedule::new(now, initial_delay),
        }
    }

    pub fn last(&self) -> Option<&ProbeStatus> {
        self.schedule.last.as_ref()
    }
}

/// A run's liveness probe.
#[derive(Debug, Clone)]
pub(super) struct LiveState {
    failures: u32,
    /// Failed `failure_threshold` times: its replacement is asked for; no more probes.
    tripped: bool,
    schedule: Schedule,
}

impl LiveState {
    pub fn new(now: Instant, initial_delay: Duration) -> LiveState {
        LiveState {
            failures: 0,
            tripped: false,
            schedule: Schedule::new(now, initial_delay),
        }
    }

    pub fn last(&self) -> Option<&ProbeStatus> {
        self.schedule.last.as_ref()
    }
}

/// An `exec` probe's process, until the reaper reports its exit.
#[derive(Debug, Clone)]
pub(super) struct ExecProbe {
    serial: u64,
    kind: Kind,
    deadline: Instant,
    timeout: Duration,
    timed_out: bool,
}

/// Why the instance's socket cannot be probed yet.
const NO_SOCKET: &str = "no socket of its own to probe yet (the port is known once it listens, or from `port` / `listen`)";

impl Supervisor {
    /// A ready signal of run `serial`: held while its readiness probe has not passed.
    /// Returns the signal to pass on now, if any.
    pub(super) fn gate_ready(&mut self, serial: u64, by: ReadyBy) -> Option<ReadyBy> {
        let Some(io) = self.runs.get_mut(&serial) else {
            return Some(by);
        };
        let settings = &self.apps[io.app].settings;
        match io.probe.as_mut() {
            Some(p) if !p.passed && by.counts(settings) && by != ReadyBy::Probe => {
                p.held = Some(by);
                None
            }
            _ => Some(by),
        }
    }

    /// Run `serial` was given its socket (it listens now): a readiness probe that found
    /// none runs at once rather than a `period` later.
    pub(super) fn socket_given(&mut self, serial: u64, now: Instant) {
        let Some(p) = self.runs.get_mut(&serial).and_then(|io| io.probe.as_mut()) else {
            return;
        };
        let found_none = p
            .schedule
            .last
            .as_ref()
            .is_some_and(|l| !l.ok && l.detail == NO_SOCKET);
        if found_none && !p.passed && !p.schedule.in_flight {
            p.schedule.next_at = now;
        }
    }

    /// When run `serial`'s `kind` probe is next due: readiness until it passes;
    /// liveness while the run serves its slot (and hotrun is not stopping).
    fn due(&self, serial: u64, kind: Kind) -> Option<Instant> {
        let io = self.runs.get(&serial)?;
        let schedule = match kind {
            Kind::Readiness => io.probe.as_ref().filter(|p| !p.passed)?.schedule.clone(),
            Kind::Liveness => {
                let slot = &self.apps[io.app].slots[io.slot];
                let serving = matches!(&slot.phase, Phase::Online { run, .. } if run.serial == serial)
                    && !slot.surplus
                    && !self.apps[io.app].removed
                    && self.shutdown == super::Shutdown::Running;
                let live = io.liveness.as_ref().filter(|l| !l.tripped && serving)?;
                live.schedule.clone()
            }
        };
        (!schedule.in_flight).then_some(schedule.next_at)
    }

    /// The earliest probe due (or `exec` probe past its timeout).
    pub(super) fn probe_deadline(&self) -> Option<Instant> {
        let timeouts = self
            .probe_children
            .values()
            .filter(|c| !c.timed_out)
            .map(|c| c.deadline);
        self.runs
            .keys()
            .flat_map(|&serial| [Kind::Readiness, Kind::Liveness].map(|k| self.due(serial, k)))
            .flatten()
            .chain(timeouts)
            .min()
    }

    /// Starts the probes that are due; kills `exec` probes past their timeout.
    pub(super) fn run_probes(&mut self, now: Instant) {
        let late: Vec<i32> = self
            .probe_children
            .iter()
            .filter(|(_, c)| !c.timed_out && c.deadline <= now)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in late {
            if let Some(c) = self.probe_children.get_mut(&pid) {
                c.timed_out = true;
            }
            self.fx.signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let mut due = Vec::new();
        for &serial in self.runs.keys() {
            for kind in [Kind::Readiness, Kind::Liveness] {
                if self.due(serial, kind).is_some_and(|t| t <= now) {
                    due.push((serial, kind));
                }
            }
        }
        for (serial, kind) in due {
            self.start_probe(serial, kind, now);
        }
    }

    /// The app's `kind` probe.
    fn plan_of(&self, a: usize, kind: Kind) -> Option<ProbePlan> {
        let plan = &self.apps[a].plan;
        match kind {
            Kind::Readiness => plan.readiness_probe.clone(),
            Kind::Liveness => plan.liveness_probe.clone(),
        }
    }

    /// The schedule of run `serial`'s `kind` probe.
    fn schedule(&mut self, serial: u64, kind: Kind) -> Option<&mut Schedule> {
        let io = self.runs.get_mut(&serial)?;
        match kind {
            Kind::Readiness => io.probe.as_mut().map(|p| &mut p.schedule),
            Kind::Liveness => io.liveness.as_mut().map(|l| &mut l.schedule),
        }
    }

    /// Where run `serial`'s own socket is, on the app's first shared port, once there is
    /// one (a port learned when the instance listens is known only then).
    fn target(&self, serial: u64, plan: &ProbePlan) -> Option<Target> {
        let io = self.runs.get(&serial)?;
        let addr = self.apps[io.app].ports.first()?;
        let source = self.listeners.probe_source(addr, &io.member)?;
        let listener = match plan.check {
            probe::Check::Tcp => self
                .listeners
                .socket(addr, &io.member)
                .and_then(|fd| fd.try_clone_to_owned().ok()),
            probe::Check::Http { .. } | probe::Check::Exec { .. } => None,
        };
        Some(Target {
            port: addr.port,
            source,
            listener,
        })
    }

    fn start_probe(&mut self, serial: u64, kind: Kind, now: Instant) {
        let Some(a) = self.runs.get(&serial).map(|io| io.app) else {
            return;
        };
        let Some(plan) = self.plan_of(a, kind) else {
            return;
        };
        if let probe::Check::Exec { command } = &plan.check {
            return self.start_exec_probe(serial, kind, command, &plan, now);
        }
        let Some(target) = self.target(serial, &plan) else {
            // Looked at again a period later; said as the probe's result.
            let no_socket = Err(NO_SOCKET.to_string());
            if let Some(s) = self.schedule(serial, kind) {
                s.answered(&no_socket, now, plan.period);
            }
            return;
        };
        if let Some(s) = self.schedule(serial, kind) {
            s.in_flight = true;
        }
        let tx = self.events.clone();
        tokio::spawn(async move {
            let result = probe::run(&plan.check, target, plan.timeout).await;
            let _ = tx
                .send(Event::Probe {
                    serial,
                    kind,
                    result,
                })
                .await;
        });
    }

    /// Starts `command` as run `serial`'s `kind` probe; the reaper reports its exit.
    fn start_exec_probe(
        &mut self,
        serial: u64,
        kind: Kind,
        command: &str,
        plan: &ProbePlan,
        now: Instant,
    ) {
        let pid = self
            .pids
            .iter()
            .find(|(_, &s)| s == serial)
            .map(|(&p, _)| p);
        let (Some(pid), Some(io)) = (pid, self.runs.get(&serial)) else {
            return;
        };
        let id = self.apps[io.app].slots[io.slot].id;
        let app = self.apps[io.app].plan.clone();
        match self.fx.spawn_probe(&app, command, pid, id) {
            Ok(child) => {
                if let Some(g) = self.guard.as_mut() {
                    g.add(child);
                }
                self.probe_children.insert(
                    child,
                    ExecProbe {
                        serial,
                        kind,
                        deadline: now + plan.timeout,
                        timeout: plan.timeout,
                        timed_out: false,
                    },
                );
                if let Some(s) = self.schedule(serial, kind) {
                    s.in_flight = true;
                }
            }
            Err(e) => self.on_probe(serial, kind, Err(format!("cannot start sh: {e}"))),
        }
    }

    /// An exited process that was an `exec` probe: its verdict. Returns whether it was.
    pub(super) fn exec_probe_exited(
        &mut self,
        pid: i32,
        exit: crate::process::reaper::Exit,
    ) -> bool {
        let Some(c) = self.probe_children.remove(&pid) else {
            return false;
        };
        if let Some(g) = self.guard.as_mut() {
            g.remove(pid);
        }
        // What it started goes with it.
        self.fx.signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        let result = match exit {
            _ if c.timed_out => Err(format!("no answer within {} ms", c.timeout.as_millis())),
            crate::process::reaper::Exit::Code(0) => Ok("exit code 0".to_string()),
            exit => Err(exit.to_string()),
        };
        self.on_probe(c.serial, c.kind, result);
        true
    }

    /// A probe of run `serial` answered.
    pub(super) fn on_probe(&mut self, serial: u64, kind: Kind, result: Result<String, String>) {
        let now = self.fx.now();
        let Some(a) = self.runs.get(&serial).map(|io| io.app) else {
            return;
        };
        let Some(plan) = self.plan_of(a, kind) else {
            return;
        };
        if let Some(s) = self.schedule(serial, kind) {
            s.answered(&result, now, plan.period);
        }
        match kind {
            Kind::Readiness => self.on_readiness(serial, result.is_ok()),
            Kind::Liveness => self.on_liveness(serial, &plan, result, now),
        }
    }

    /// A readiness probe passed or not: once it passes, the instance is ready now if its
    /// own signal came (or none is to come), else when that comes.
    fn on_readiness(&mut self, serial: u64, passed: bool) {
        let Some(io) = self.runs.get_mut(&serial) else {
            return;
        };
        let gives_signal = self.apps[io.app].settings.gives_signal();
        let Some(p) = io.probe.as_mut().filter(|_| passed) else {
            return;
        };
        p.passed = true;
        let by = match p.held.take() {
            Some(by) => by,
            None if !gives_signal => ReadyBy::Probe,
            None => return,
        };
        self.on_ready(serial, by);
    }

    /// A liveness probe answered: `failure_threshold` failures in a row replace the
    /// instance (its successor first) and fail a reload in flight.
    fn on_liveness(
        &mut self,
        serial: u64,
        plan: &ProbePlan,
        result: Result<String, String>,
        now: Instant,
    ) {
        let Some(l) = self
            .runs
            .get_mut(&serial)
            .and_then(|io| io.liveness.as_mut())
        else {
            return;
        };
        let last = match result {
            Ok(_) => {
                l.failures = 0;
                return;
            }
            Err(why) => why,
        };
        l.failures += 1;
        if l.failures < plan.failure_threshold || l.tripped {
            return;
        }
        l.tripped = true;
        let Some((a, s, Role::Current)) = self.locate(serial) else {
            return;
        };
        let label = self.label(a, s);
        let reason = format!(
            "its liveness probe {} failed {} times in a row (last: {last})",
            plan.describe(),
            plan.failure_threshold
        );
        if self.apps[a].reload.rollout().is_none() {
            self.logs.say(&format!("{label}: {reason} -> replacing it"));
            return self.request_reload(a, Trigger::Liveness { slots: vec![s] }, None);
        }
        // During a reload: a canary in its hold is rolled back (its old instance serves
        // again); any other is replaced once the failed reload is over.
        let rolled_back = self.roll_back_canary(a, s, now);
        if !rolled_back {
            self.logs.say(&format!("{label}: {reason} -> replacing it"));
        }
        let input = rollout::Input::Unhealthy {
            slot: s,
            reason: reason.clone(),
        };
        self.rollout_input(a, input, now);
        if !rolled_back {
            self.request_reload(a, Trigger::Liveness { slots: vec![s] }, None);
        }
    }

    /// Whether run `serial`'s last liveness probe failed: it gets no new connection until
    /// one passes (or its replacement takes the slot).
    pub(super) fn failing(&self, serial: u64) -> bool {
        self.runs
            .get(&serial)
            .and_then(|io| io.liveness.as_ref())
            .is_some_and(|l| l.failures > 0)
    }

    /// What the readiness probe of run `serial` last found, for messages.
    pub(super) fn probe_detail(&self, serial: u64) -> Option<String> {
        let io = self.runs.get(&serial)?;
        let plan = self.apps[io.app].plan.readiness_probe.as_ref()?;
        let p = io.probe.as_ref()?;
        let mut said = format!("readiness probe {}", plan.describe());
        match p.last() {
            Some(last) => said.push_str(&format!(": {}", last.detail)),
            None => said.push_str(": not run yet"),
        }
        if p.held.is_some() {
            said.push_str(" (its own ready signal came)");
        }
        Some(said)
    }
}

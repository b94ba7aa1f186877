//! Readiness probes in the loop: an instance of an app with `readiness_probe` is ready
//! only once a probe of its own socket passes, and after its own ready signal when it
//! gives one (that signal is held until then). This is the one gate every readiness goes
//! through (first start, restart, a reload's successor), because every ready signal
//! reaches the loop through `on_ready`. Probes run as small tasks every `period` from
//! `initial_delay` on, until one passes; each result is kept for `status`.

use std::time::Instant;

use super::slot::ReadyBy;
use super::{Event, Supervisor};
use crate::control::protocol::ProbeStatus;
use crate::probe::{self, Target};

/// A run's readiness probe.
#[derive(Debug, Clone)]
pub(super) struct ProbeState {
    /// Its own ready signal, held until a probe passes.
    held: Option<ReadyBy>,
    passed: bool,
    in_flight: bool,
    next_at: Instant,
    last: Option<ProbeStatus>,
}

impl ProbeState {
    pub fn new(now: Instant, initial_delay: std::time::Duration) -> ProbeState {
        ProbeState {
            held: None,
            passed: false,
            in_flight: false,
            next_at: now + initial_delay,
            last: None,
        }
    }

    /// When the next probe is due (none once one passed, or while one runs).
    fn due(&self) -> Option<Instant> {
        (!self.passed && !self.in_flight).then_some(self.next_at)
    }

    pub fn last(&self) -> Option<&ProbeStatus> {
        self.last.as_ref()
    }
}

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

    /// The earliest probe due.
    pub(super) fn probe_deadline(&self) -> Option<Instant> {
        self.runs
            .values()
            .filter_map(|io| io.probe.as_ref().and_then(ProbeState::due))
            .min()
    }

    /// Starts the probes that are due.
    pub(super) fn run_probes(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .runs
            .iter()
            .filter(|(_, io)| {
                io.probe
                    .as_ref()
                    .and_then(ProbeState::due)
                    .is_some_and(|t| t <= now)
            })
            .map(|(&serial, _)| serial)
            .collect();
        for serial in due {
            self.start_probe(serial, now);
        }
    }

    fn start_probe(&mut self, serial: u64, now: Instant) {
        let io = &self.runs[&serial];
        let app = &self.apps[io.app];
        let Some(plan) = app.plan.readiness_probe.clone() else {
            return;
        };
        // The instance's own socket on the app's first shared port, once there is one.
        let target = app.ports.first().and_then(|addr| {
            let source = self.listeners.probe_source(addr, &io.member)?;
            let listener = match plan.check {
                probe::Check::Tcp => self
                    .listeners
                    .socket(addr, &io.member)
                    .and_then(|fd| fd.try_clone_to_owned().ok()),
                probe::Check::Http { .. } => None,
            };
            Some(Target {
                port: addr.port,
                source,
                listener,
            })
        });
        let p = self.runs.get_mut(&serial).and_then(|io| io.probe.as_mut());
        let Some(p) = p else { return };
        let Some(target) = target else {
            // Its port is not known yet (learned when it listens): look again later.
            p.next_at = now + plan.period;
            p.last = Some(ProbeStatus {
                ok: false,
                detail: "no socket of its own to probe yet (the port is known once it listens, or from `port` / `listen`)".into(),
                at: now_rfc3339(),
            });
            return;
        };
        p.in_flight = true;
        let tx = self.events.clone();
        tokio::spawn(async move {
            let result = probe::run(&plan.check, target, plan.timeout).await;
            let _ = tx.send(Event::Probe { serial, result }).await;
        });
    }

    /// A probe of run `serial` answered.
    pub(super) fn on_probe(&mut self, serial: u64, result: Result<String, String>) {
        let now = self.fx.now();
        let Some(io) = self.runs.get_mut(&serial) else {
            return;
        };
        let gives_signal = self.apps[io.app].settings.gives_signal();
        let period = self.apps[io.app]
            .plan
            .readiness_probe
            .as_ref()
            .map(|p| p.period)
            .unwrap_or_default();
        let Some(p) = io.probe.as_mut() else {
            return;
        };
        p.in_flight = false;
        p.last = Some(ProbeStatus {
            ok: result.is_ok(),
            detail: match &result {
                Ok(said) | Err(said) => said.clone(),
            },
            at: now_rfc3339(),
        });
        if result.is_err() {
            p.next_at = now + period;
            return;
        }
        p.passed = true;
        // Ready now if its own signal came (or none is to come); else when it comes.
        let by = match p.held.take() {
            Some(by) => by,
            None if !gives_signal => ReadyBy::Probe,
            None => return,
        };
        self.on_ready(serial, by);
    }

    /// What the readiness probe of run `serial` last found, for messages.
    pub(super) fn probe_detail(&self, serial: u64) -> Option<String> {
        let io = self.runs.get(&serial)?;
        let plan = self.apps[io.app].plan.readiness_probe.as_ref()?;
        let p = io.probe.as_ref()?;
        let mut said = format!("readiness probe {}", plan.describe());
        match &p.last {
            Some(last) => said.push_str(&format!(": {}", last.detail)),
            None => said.push_str(": not run yet"),
        }
        if p.held.is_some() {
            said.push_str(" (its own ready signal came)");
        }
        Some(said)
    }
}

fn now_rfc3339() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

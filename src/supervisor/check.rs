//! `hotrun check`: a CI smoke test. Start everything, wait until every instance is ready,
//! run N rolling reloads of every app, stop gracefully, report. Any instance that never
//! gets ready, an errored app, a failed reload or an unclean stop fails the check.

use std::time::{Duration, Instant};

use super::slot::Phase;
use super::{Mode, Supervisor};

/// The figures `hotrun check` prints.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub ready: Vec<(String, Duration)>,
    pub reloads: Vec<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not a check run.
    Off,
    WaitingReady,
    /// `expected` apps are being reloaded (unknown while the request is being made);
    /// `finished` of them are done.
    Reloading {
        started: Instant,
        expected: Option<usize>,
        finished: usize,
    },
    Stopping,
}

pub(super) struct CheckState {
    stage: Stage,
    reloads_left: u32,
    started: Instant,
    report: CheckReport,
    pub(super) failure: Option<String>,
}

impl CheckState {
    pub fn new(mode: Mode, now: Instant) -> CheckState {
        let (stage, reloads_left) = match mode {
            Mode::Serve => (Stage::Off, 0),
            Mode::Check { reloads } => (Stage::WaitingReady, reloads),
        };
        CheckState {
            stage,
            reloads_left,
            started: now,
            report: CheckReport::default(),
            failure: None,
        }
    }

    fn fail(&mut self, why: String) {
        if self.stage != Stage::Off && self.failure.is_none() {
            self.failure = Some(why);
        }
    }

    /// An instance is not ready within listen_timeout (`what`: what it lacks, when).
    pub fn not_ready(&mut self, app: &str, what: &str) {
        self.fail(format!("{app}: an instance is not ready: {what}"));
    }

    pub fn errored(&mut self, app: &str) {
        self.fail(format!("{app}: errored (it keeps exiting)"));
    }

    /// An instance needed SIGKILL at the stop.
    pub fn unclean(&mut self, label: &str) {
        self.fail(format!(
            "{label}: did not stop within kill_timeout and was killed"
        ));
    }

    pub fn reload_done(&mut self, _app: &str, error: Option<String>) {
        if let Some(e) = error {
            self.fail(e);
        }
        if let Stage::Reloading { finished, .. } = &mut self.stage {
            *finished += 1;
        }
    }
}

impl Supervisor {
    /// Moves the check on when its current stage is over.
    pub(super) fn drive_check(&mut self, now: Instant) {
        match self.check.stage {
            Stage::Off | Stage::Stopping => {}
            _ if self.check.failure.is_some() => self.finish_check(),
            Stage::WaitingReady => {
                let started = self.check.started;
                for app in &self.apps {
                    let online = app
                        .slots
                        .iter()
                        .all(|s| matches!(s.phase, Phase::Online { .. }));
                    let known = self
                        .check
                        .report
                        .ready
                        .iter()
                        .any(|(n, _)| *n == app.plan.name);
                    if online && !known {
                        let took = now.saturating_duration_since(started);
                        self.check.report.ready.push((app.plan.name.clone(), took));
                    }
                }
                if self.check.report.ready.len() == self.apps.len() {
                    self.next_check_reload(now);
                }
            }
            Stage::Reloading {
                started,
                expected: Some(n),
                finished,
            } if finished >= n => {
                self.check
                    .report
                    .reloads
                    .push(now.saturating_duration_since(started));
                self.next_check_reload(now);
            }
            Stage::Reloading { .. } => {}
        }
    }

    fn next_check_reload(&mut self, now: Instant) {
        if self.check.reloads_left == 0 {
            return self.finish_check();
        }
        self.check.reloads_left -= 1;
        self.check.stage = Stage::Reloading {
            started: now,
            expected: None,
            finished: 0,
        };
        let rolled = self.reload_apps(None, super::rollout::Trigger::Check, None);
        if let Stage::Reloading { expected, .. } = &mut self.check.stage {
            *expected = Some(rolled);
        }
    }

    fn finish_check(&mut self) {
        self.check.stage = Stage::Stopping;
        self.stop_all();
    }

    /// Prints the report; the exit code of `hotrun check`.
    pub(super) fn check_report(&mut self) -> i32 {
        let report = &self.check.report;
        let mut out = String::new();
        for (app, took) in &report.ready {
            out.push_str(&format!(
                "  {app}: every instance ready after {} ms\n",
                took.as_millis()
            ));
        }
        for (i, took) in report.reloads.iter().enumerate() {
            out.push_str(&format!(
                "  rolling reload {}: {} ms\n",
                i + 1,
                took.as_millis()
            ));
        }
        match &self.check.failure {
            None => {
                print!("hotrun check: ok\n{out}  stop: clean\n");
                crate::exit::OK
            }
            Some(why) => {
                print!("hotrun check: FAILED: {why}\n{out}");
                crate::exit::FAILURE
            }
        }
    }
}

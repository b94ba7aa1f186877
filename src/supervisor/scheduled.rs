//! Scheduled reloads: each app's `cron_restart` (see `crate::schedule`) becomes a rolling
//! reload at its time, logged, as any other trigger. The next run is in `hotrun status`.

use std::time::Instant;

use chrono::Local;

use super::rollout::Trigger;
use super::{Shutdown, Supervisor};
use crate::schedule::{self, NextRun};

/// An app's schedule: the expression, as parsed, and its next run.
#[derive(Debug, Clone)]
pub(super) struct Scheduled {
    pub expression: String,
    cron: Option<croner::Cron>,
    pub next: Option<NextRun>,
}

impl Supervisor {
    /// Starts the reloads whose time came; (re)computes the next run of every app whose
    /// expression is new or changed.
    pub(super) fn run_schedules(&mut self, now: Instant) {
        for a in 0..self.apps.len() {
            let app = &mut self.apps[a];
            let Some(expression) = app.plan.cron_restart.as_deref().filter(|_| !app.removed) else {
                app.scheduled = None;
                continue;
            };
            let s = match &mut app.scheduled {
                Some(s) if s.expression == expression => s,
                other => {
                    // New or changed: parsed once (the file was checked when it was read).
                    let cron = schedule::parse(expression).ok();
                    let next = cron
                        .as_ref()
                        .and_then(|c| schedule::next_run(c, now, Local::now()));
                    *other = Some(Scheduled {
                        expression: expression.to_string(),
                        cron,
                        next,
                    });
                    continue;
                }
            };
            let Some(fired) = s.next.filter(|n| n.at <= now) else {
                continue;
            };
            // The next run is strictly after this one, whatever the clocks say.
            let wall = Local::now().max(fired.wall);
            s.next = s
                .cron
                .as_ref()
                .and_then(|c| schedule::next_run(c, now, wall));
            if self.shutdown == Shutdown::Running {
                let line = format!("{}: cron_restart '{expression}' -> reload", app.plan.name);
                self.logs.say(&line);
                self.reload_apps(Some(vec![a]), Trigger::Cron, None);
            }
        }
    }

    /// When the next scheduled reload is due, of any app.
    pub(super) fn schedule_deadline(&self) -> Option<Instant> {
        self.apps
            .iter()
            .filter_map(|a| a.scheduled.as_ref()?.next.map(|n| n.at))
            .min()
    }
}

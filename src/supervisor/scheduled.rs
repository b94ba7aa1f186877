//! Scheduled reloads: each app's `cron_restart` (see `crate::schedule`) becomes a rolling
//! reload at its time, logged, as any other trigger. The next run is in `hotrun status`.

use std::time::Instant;

use chrono::Local;

use super::rollout::Trigger;
use super::{Shutdown, Supervisor};
use crate::schedule::{self, NextRun};

/// An app's schedule: the expression and its next run.
#[derive(Debug, Clone)]
pub(super) struct Scheduled {
    pub expression: String,
    pub next: Option<NextRun>,
}

impl Supervisor {
    /// Starts the reloads whose time came; (re)computes the next run of every app whose
    /// expression is new or changed.
    pub(super) fn run_schedules(&mut self, now: Instant) {
        for a in 0..self.apps.len() {
            let app = &mut self.apps[a];
            let expression = app.plan.cron_restart.clone().filter(|_| !app.removed);
            let Some(expression) = expression else {
                app.scheduled = None;
                continue;
            };
            let due = match &app.scheduled {
                Some(s) if s.expression == expression => s.next.filter(|n| n.at <= now),
                _ => {
                    let next = schedule::parse(&expression)
                        .ok()
                        .and_then(|c| schedule::next_run(&c, now, Local::now()));
                    app.scheduled = Some(Scheduled { expression, next });
                    continue;
                }
            };
            let Some(fired) = due else { continue };
            // The next run is strictly after this one, whatever the clocks say.
            let wall = Local::now().max(fired.wall);
            let next = schedule::parse(&expression)
                .ok()
                .and_then(|c| schedule::next_run(&c, now, wall));
            app.scheduled = Some(Scheduled {
                expression: expression.clone(),
                next,
            });
            if self.shutdown == Shutdown::Running {
                let name = self.apps[a].plan.name.clone();
                self.logs
                    .say(&format!("{name}: cron_restart '{expression}' -> reload"));
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

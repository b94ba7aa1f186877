//! `hotrun status`: the state of every app and instance, as the control protocol's typed
//! `Status` (what `hotrun status --json` prints).

use super::slot::Phase;
use super::Supervisor;
use crate::control::protocol::{
    AppStatus, CronStatus, InstanceStatus, LastReload, ReloadResult, Status,
};

fn rfc3339(t: &chrono::DateTime<chrono::Local>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

impl Supervisor {
    pub(super) fn status(&self) -> Status {
        let now = self.fx.now();
        let pgids: Vec<i32> = self
            .apps
            .iter()
            .flat_map(|a| a.slots.iter())
            .filter_map(|s| s.phase.run().map(|r| r.pid))
            .collect();
        let usage = self.fx.group_usage(&pgids);
        let usage_of = |pid: i32| pgids.iter().position(|&p| p == pid).map(|i| usage[i]);
        let mut cpu = self.cpu.borrow_mut();
        cpu.retain(&pgids);

        let apps = self
            .apps
            .iter()
            .filter(|app| !app.removed)
            .map(|app| {
                let instances = app
                    .slots
                    .iter()
                    .map(|slot| {
                        let run = slot.phase.run();
                        let used = run.and_then(|r| usage_of(r.pid));
                        InstanceStatus {
                            id: slot.id,
                            pid: run.map(|r| r.pid),
                            state: slot.phase.state(),
                            ready_by: match &slot.phase {
                                Phase::Online { ready_by, .. } => Some(ready_by.as_str().into()),
                                _ => None,
                            },
                            restarts: slot.history.restarts,
                            reloads: slot.reloads,
                            cpu_percent: run
                                .zip(used)
                                .map(|(r, u)| cpu.percent(r.pid, r.started, u.cpu, now)),
                            cpu_seconds: used.map(|u| u.cpu.as_secs_f64()),
                            memory_bytes: used.map(|u| u.rss_bytes),
                            uptime_ms: run.map(|r| {
                                now.saturating_duration_since(r.started).as_millis() as u64
                            }),
                            probe: run
                                .and_then(|r| self.runs.get(&r.serial))
                                .and_then(|io| io.probe.as_ref())
                                .and_then(|p| p.last().cloned()),
                            liveness: run
                                .and_then(|r| self.runs.get(&r.serial))
                                .and_then(|io| io.liveness.as_ref())
                                .and_then(|l| l.last().cloned()),
                        }
                    })
                    .collect();
                AppStatus {
                    name: app.plan.name.clone(),
                    exec_mode: app.plan.exec_mode.as_str().into(),
                    cron_restart: app.scheduled.as_ref().map(|s| CronStatus {
                        expression: s.expression.clone(),
                        next: s.next.map(|n| rfc3339(&n.wall)),
                    }),
                    reloading: app.reload.rollout().is_some(),
                    reloads: app.reloads,
                    last_reload: app.last_reload.as_ref().map(|l| LastReload {
                        trigger: l.trigger.into(),
                        result: if l.ok {
                            ReloadResult::Ok
                        } else {
                            ReloadResult::Failed
                        },
                        at: rfc3339(&l.at),
                    }),
                    instances,
                }
            })
            .collect();
        Status {
            pid: std::process::id(),
            config: self.config_file.clone(),
            stopping: self.shutdown != super::Shutdown::Running || self.stop_at.is_some(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            upgrade: self.upgraded.clone(),
            apps,
        }
    }
}

//! `hotrun status`: the state of every app and instance, as the JSON the control socket
//! returns (and `hotrun status --json` prints).

use std::time::Instant;

use serde_json::{json, Value};

use super::slot::Phase;
use super::Supervisor;
use crate::memory;

impl Supervisor {
    pub(super) fn status_json(&self) -> Value {
        let now = Instant::now();
        let pgids: Vec<i32> = self
            .apps
            .iter()
            .flat_map(|a| a.slots.iter())
            .filter_map(|s| s.phase.run().map(|r| r.pid))
            .collect();
        let usage = memory::group_usage(&pgids);
        let usage_of = |pid: i32| pgids.iter().position(|&p| p == pid).map(|i| usage[i]);
        let mut cpu = self.cpu.borrow_mut();
        cpu.retain(&pgids);

        let apps: Vec<Value> = self
            .apps
            .iter()
            .filter(|app| !app.removed)
            .map(|app| {
                let instances: Vec<Value> = app
                    .slots
                    .iter()
                    .map(|slot| {
                        let run = slot.phase.run();
                        let ready_by = match &slot.phase {
                            Phase::Online { ready_by, .. } => Some(ready_by.as_str()),
                            _ => None,
                        };
                        json!({
                            "id": slot.id,
                            "pid": run.map(|r| r.pid),
                            "state": slot.phase.state_name(),
                            "ready_by": ready_by,
                            "restarts": slot.history.restarts,
                            "reloads": slot.reloads,
                            "memory_bytes": run.and_then(|r| usage_of(r.pid)).map(|u| u.rss_bytes),
                            "cpu_percent": run.and_then(|r| {
                                let u = usage_of(r.pid)?;
                                Some(cpu.percent(r.pid, r.started, u.cpu, now))
                            }),
                            "uptime_ms": run.map(|r| now.saturating_duration_since(r.started).as_millis() as u64),
                        })
                    })
                    .collect();
                let last_reload = app.last_reload.as_ref().map(|l| {
                    json!({
                        "trigger": l.trigger,
                        "result": if l.ok { "ok" } else { "failed" },
                        "at": l.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
                    })
                });
                let cron_restart = app.scheduled.as_ref().map(|s| {
                    json!({
                        "expression": s.expression,
                        "next": s.next.map(|n| n.wall.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)),
                    })
                });
                json!({
                    "name": app.plan.name,
                    "exec_mode": app.plan.exec_mode.as_str(),
                    "cron_restart": cron_restart,
                    "reloading": app.rollout.is_some(),
                    "reloads": app.reloads,
                    "last_reload": last_reload,
                    "instances": instances,
                })
            })
            .collect();
        json!({ "pid": std::process::id(), "config": self.config_file, "apps": apps })
    }
}

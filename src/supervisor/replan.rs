//! Reloads apply what changed. Every whole-app reload (SIGHUP, `hotrun reload`, `rs`, a
//! file change) first reads the ecosystem file again through the same pipeline as at
//! start, with the profile chosen then, and compares it with what runs: env (added,
//! changed, removed keys), script, args, interpreter, cwd, timeouts, watch settings...
//! A changed `instances` alone scales the app without touching its other instances;
//! apps added to the file start, apps removed from it stop. A file that no longer loads
//! touches nothing. (A memory or crash replacement uses the configuration in force.)

use std::time::Instant;

use super::changes::{describe, only_instances_changed};
use super::rollout::Trigger;

use super::{AppState, SlotState, Supervisor};
use crate::config::{self, LoadOptions};
use crate::control::protocol::Response;
use crate::plan::{AppPlan, Plan};

/// Where the plan comes from, and how a command adjusts it (`hotrun watch`).
#[derive(Debug, Clone)]
pub struct Source {
    pub opts: LoadOptions,
    /// Watch every app (its `watch` paths, or its cwd).
    pub watch_all: bool,
    /// Run this many instances of every app.
    pub instances: Option<u32>,
}

impl Source {
    /// Reads and resolves the ecosystem file; warnings are returned for the caller to say.
    pub fn load(&self) -> Result<(Plan, Vec<String>), config::ConfigError> {
        let loaded = config::load(&self.opts)?;
        let mut plan = loaded.plan;
        self.adjust(&mut plan);
        Ok((plan, loaded.warnings))
    }

    /// The command's own changes to a plan.
    pub fn adjust(&self, plan: &mut Plan) {
        for app in &mut plan.apps {
            if self.watch_all && app.watch.is_empty() {
                app.watch = vec![app.cwd.clone()];
            }
            if let Some(n) = self.instances {
                app.instances = n;
            }
        }
    }
}

impl Supervisor {
    /// A whole-app reload of `scope` (every app when `None`): read the file again, apply
    /// what changed, then roll. `reply` is a waiting `hotrun reload`. Returns how many
    /// apps are rolled.
    pub(super) fn reload_apps(
        &mut self,
        scope: Option<Vec<usize>>,
        trigger: Trigger,
        reply: Option<tokio::sync::oneshot::Sender<Response>>,
    ) -> usize {
        if self.shutdown != super::Shutdown::Running || self.stop_at.is_some() {
            if let Some(reply) = reply {
                let _ = reply.send(Response::err("hotrun is stopping"));
            }
            return 0;
        }
        let fresh = match self.source.as_ref().map(Source::load) {
            None => None,
            Some(Ok((plan, _warnings))) => Some(plan),
            Some(Err(e)) => {
                let msg = format!("reload not started: the ecosystem file does not load: {e}");
                for line in msg.lines() {
                    self.logs.say(line);
                }
                let selected = scope.unwrap_or_else(|| self.live_apps());
                for a in selected {
                    self.record_failed_reload(a, &trigger);
                }
                if let Some(reply) = reply {
                    let _ = reply.send(Response::err(msg));
                }
                return 0;
            }
        };
        let whole = scope.is_none();
        let mut selected = scope.unwrap_or_else(|| self.live_apps());
        if let Some(plan) = fresh {
            if whole {
                self.add_and_remove_apps(&plan);
            }
            let mut rolled = Vec::with_capacity(selected.len());
            for a in selected {
                let Some(new) = plan.apps.iter().find(|p| p.name == self.apps[a].plan.name) else {
                    continue;
                };
                if self.stage(a, new.clone()) {
                    rolled.push(a);
                }
            }
            selected = rolled;
        }
        let waiter = reply.map(|reply| self.waiter(selected.len(), reply));
        let rolled = selected.len();
        for a in selected {
            self.request_reload(a, trigger.clone(), waiter);
        }
        rolled
    }

    /// A pending reply for `n` apps; answered at once when there are none.
    fn waiter(&mut self, n: usize, reply: tokio::sync::oneshot::Sender<Response>) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        if n == 0 {
            let _ = reply.send(Response::ok("nothing to reload"));
            return id;
        }
        self.replies.insert(
            id,
            super::PendingReply {
                remaining: n,
                failures: Vec::new(),
                reply: Some(reply),
            },
        );
        id
    }

    /// The apps still in the file.
    pub(super) fn live_apps(&self) -> Vec<usize> {
        (0..self.apps.len())
            .filter(|&a| !self.apps[a].removed)
            .collect()
    }

    /// Says what changed for app `a` and keeps the new plan for its next rollout. Returns
    /// whether the app is to be rolled (not when only `instances` changed: it is scaled).
    fn stage(&mut self, a: usize, new: AppPlan) -> bool {
        let app = &self.apps[a];
        let current = app.next_plan.as_ref().unwrap_or(&app.plan);
        let changes = describe(current, &new);
        if !changes.is_empty() {
            self.logs
                .say(&format!("{}: {}", new.name, changes.join("; ")));
        }
        if only_instances_changed(current, &new) && app.reload.rollout().is_none() {
            let now = self.fx.now();
            return match self.apply_plan(a, new, now) {
                Ok(()) => false,
                Err(e) => {
                    self.logs.say(&e);
                    false
                }
            };
        }
        self.apps[a].next_plan = Some(new);
        true
    }

    /// Apps new in the file start (they are not rolled); apps gone from it stop.
    fn add_and_remove_apps(&mut self, plan: &Plan) {
        let now = self.fx.now();
        for a in self.live_apps() {
            if !plan.apps.iter().any(|p| p.name == self.apps[a].plan.name) {
                self.logs.say(&format!(
                    "{}: gone from the ecosystem file: stopping it",
                    self.apps[a].plan.name
                ));
                self.apps[a].removed = true;
                self.kill_build(a);
                self.abort_rollout(a, "the app was removed from the ecosystem file", now);
                for s in 0..self.apps[a].slots.len() {
                    self.apply(a, s, super::slot::Input::Stop, now);
                }
            }
        }
        for new in &plan.apps {
            let existing = self.apps.iter().position(|a| a.plan.name == new.name);
            match existing {
                Some(a) if self.apps[a].removed => {
                    self.logs.say(&format!(
                        "{}: back in the ecosystem file: starting it",
                        new.name
                    ));
                    self.apps[a].removed = false;
                    if let Err(e) = self.apply_plan(a, new.clone(), now) {
                        self.logs.say(&e);
                    }
                    for s in 0..self.apps[a].slots.len() {
                        if self.apps[a].slots[s].phase.is_final() {
                            self.apply(a, s, super::slot::Input::Start, now);
                        } else {
                            self.apps[a].slots[s].restart_after_stop = true;
                        }
                    }
                    if self.apps[a].plan.build.is_some() {
                        self.start_build(a, None, now);
                    }
                }
                Some(_) => {}
                None => {
                    self.logs.say(&format!(
                        "{}: new in the ecosystem file: starting it",
                        new.name
                    ));
                    if let Err(e) = self.add_app(new.clone(), now) {
                        self.logs.say(&e);
                    }
                }
            }
        }
    }

    /// Adds and starts an app that was not in the file before.
    fn add_app(&mut self, plan: AppPlan, now: Instant) -> Result<(), String> {
        let ports = super::ports::claim_declared(&mut self.listeners, &plan)?;
        let a = self.apps.len();
        let state = AppState::new(plan, ports, Vec::new());
        self.apps.push(state);
        let pm_base = self.next_pm_id;
        self.logs.set_app(a, &self.apps[a].plan, pm_base);
        self.scale(a, self.apps[a].plan.instances, now);
        if self.apps[a].plan.build.is_some() {
            self.start_build(a, None, now);
        }
        self.rebuild_watcher();
        Ok(())
    }

    /// Makes `new` the app's plan: sockets, settings, log prefixes, instance count, watches.
    pub(super) fn apply_plan(
        &mut self,
        a: usize,
        new: AppPlan,
        now: Instant,
    ) -> Result<(), String> {
        let mut ports = super::ports::claim_declared(&mut self.listeners, &new)?;
        // Ports the instances asked for themselves stay shared until the reload is over
        // (`forget_unused_ports`); the old plan's declared ports do not.
        let declared_before = super::ports::declared_ports(&self.apps[a].plan);
        for learned in &self.apps[a].ports {
            if !ports.contains(learned) && !declared_before.contains(learned) {
                ports.push(*learned);
            }
        }
        let watch_changed = {
            let old = &self.apps[a].plan;
            (&old.watch, &old.ignore_watch, old.watch_poll)
                != (&new.watch, &new.ignore_watch, new.watch_poll)
        };
        let instances = new.instances;
        let learned = self.apps[a].settings.expect_listen;
        let app = &mut self.apps[a];
        app.settings = super::settings_of(&new, &ports, learned);
        app.ports = ports;
        app.ready_re = super::ready_regex(&new);
        app.plan = new;
        let pm_base = app.slots.first().map_or(self.next_pm_id, |s| s.pm_id);
        self.logs.set_app(a, &self.apps[a].plan, pm_base);
        self.scale(a, instances, now);
        if watch_changed {
            self.rebuild_watcher();
        }
        Ok(())
    }

    /// Starts new slots (ready-gated, as any start) or stops surplus ones, highest id
    /// first, so the app runs `n` instances; the others are untouched.
    pub(super) fn scale(&mut self, a: usize, n: u32, now: Instant) {
        let active = self.apps[a].slots.iter().filter(|s| !s.surplus).count() as u32;
        if n > active {
            for id in active..n {
                // A surplus slot being stopped with this id comes back.
                if let Some(s) = self.apps[a].slots.iter().position(|s| s.id == id) {
                    let slot = &mut self.apps[a].slots[s];
                    slot.surplus = false;
                    if slot.phase.is_final() && slot.retiring.is_empty() {
                        self.apply(a, s, super::slot::Input::Start, now);
                    } else {
                        self.apps[a].slots[s].restart_after_stop = true;
                    }
                    continue;
                }
                let pm_id = self.next_pm_id;
                self.next_pm_id += 1;
                self.apps[a].slots.push(SlotState::new(id, pm_id, now));
            }
        } else {
            for s in (0..self.apps[a].slots.len()).rev() {
                if self.apps[a].slots[s].id >= n && !self.apps[a].slots[s].surplus {
                    self.apps[a].slots[s].surplus = true;
                    self.apps[a].slots[s].restart_after_stop = false;
                    // Out of the kernel's choice first, then drained like a replaced one.
                    let input = if self.can_drain(a) {
                        super::slot::Input::Drain
                    } else {
                        super::slot::Input::Stop
                    };
                    self.apply(a, s, input, now);
                    self.sync_live_sockets();
                }
            }
        }
        // Stopped surplus slots are dropped at the end of `tick`, never here: callers may
        // hold slot indexes.
    }

    /// Removes surplus slots at the end of the list once they have stopped.
    pub(super) fn drop_stopped_surplus(&mut self, a: usize) {
        while let Some(last) = self.apps[a].slots.last() {
            if last.surplus && last.phase.is_final() && last.retiring.is_empty() {
                self.apps[a].slots.pop();
            } else {
                break;
            }
        }
    }

    fn record_failed_reload(&mut self, a: usize, trigger: &Trigger) {
        self.apps[a].last_reload = Some(super::LastReload {
            trigger: trigger.as_str(),
            ok: false,
            at: chrono::Local::now(),
        });
    }

    /// `hotrun reload --dry-run`: what a reload would change, changing nothing.
    pub(super) fn dry_run(&mut self, scope: Option<Vec<usize>>) -> Response {
        let Some(source) = self.source.as_ref() else {
            return Response::ok("no ecosystem file to read again");
        };
        let plan = match source.load() {
            Ok((plan, _)) => plan,
            Err(e) => return Response::err(format!("the ecosystem file does not load: {e}")),
        };
        let whole = scope.is_none();
        let selected = scope.unwrap_or_else(|| self.live_apps());
        let mut lines = Vec::new();
        for &a in &selected {
            let app = &self.apps[a];
            match plan.apps.iter().find(|p| p.name == app.plan.name) {
                None => lines.push(format!(
                    "{}: would stop (gone from the file)",
                    app.plan.name
                )),
                Some(new) => {
                    let changes = describe(&app.plan, new);
                    let what = if only_instances_changed(&app.plan, new) {
                        "would scale"
                    } else {
                        "would reload"
                    };
                    let detail = if changes.is_empty() {
                        "no configuration change".to_string()
                    } else {
                        changes.join("; ")
                    };
                    lines.push(format!("{}: {what}: {detail}", app.plan.name));
                }
            }
        }
        if whole {
            for new in &plan.apps {
                if !self
                    .apps
                    .iter()
                    .any(|a| a.plan.name == new.name && !a.removed)
                {
                    lines.push(format!("{}: would start (new in the file)", new.name));
                }
            }
        }
        Response::ok(lines.join("\n"))
    }
}

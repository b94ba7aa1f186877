//! What the runner keeps per app and per instance slot beside the pure state machines.

use std::time::Instant;

use super::restart::{self, History};
use super::rollout::{Queue, Rollout, Trigger};
use super::slot::{Phase, Settings};
use super::{build, ports, scheduled, triggers, window};
use crate::plan::AppPlan;
use crate::sockets::ListenAddr;

/// One slot with what the loop keeps beside its phase.
pub(super) struct SlotState {
    pub(super) id: u32,
    pub(super) pm_id: u32,
    /// The slot's instance.
    pub(super) phase: Phase,
    pub(super) history: History,
    /// Times a reload's successor took this slot (`status`' reloads per instance).
    pub(super) reloads: u32,
    /// Instances of this slot being stopped: replaced ones, failed successors.
    pub(super) retiring: Vec<Phase>,
    /// `hotrun restart`: start again once stopped.
    pub(super) restart_after_stop: bool,
    /// Scaled away: stopping, then dropped.
    pub(super) surplus: bool,
    /// Which of the slot's listening sockets its instance uses (see `sockets::Member`):
    /// a restart keeps it, a reload's successor brings a new one.
    pub(super) lane: u64,
    pub(super) memory: triggers::MemoryHistory,
}

impl SlotState {
    pub(super) fn new(id: u32, pm_id: u32, now: Instant) -> SlotState {
        SlotState {
            id,
            pm_id,
            phase: Phase::Pending { at: now },
            history: History::default(),
            reloads: 0,
            retiring: Vec::new(),
            restart_after_stop: false,
            surplus: false,
            lane: 0,
            memory: Default::default(),
        }
    }
}

/// The result of the last reload of an app.
#[derive(Debug, Clone)]
pub(super) struct LastReload {
    pub(super) trigger: &'static str,
    pub(super) ok: bool,
    pub(super) at: chrono::DateTime<chrono::Local>,
}

/// An app's reload in flight, one at a time (its queue folds the requests behind it).
#[derive(Debug, Default)]
pub(super) enum Reload {
    #[default]
    Idle,
    /// Its `build` runs first; the rollout begins once it has succeeded.
    Building { trigger: Trigger },
    /// Replacing slots.
    Rolling(Rollout),
}

impl Reload {
    /// The rollout, while slots are replaced.
    pub(super) fn rollout(&self) -> Option<&Rollout> {
        match self {
            Reload::Rolling(r) => Some(r),
            _ => None,
        }
    }

    /// Takes the rollout out (to step it, or to end it); anything else stays.
    pub(super) fn take_rollout(&mut self) -> Option<Rollout> {
        match std::mem::take(self) {
            Reload::Rolling(r) => Some(r),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Ends the build stage: its trigger (none for a first build, or when no reload
    /// waits for the build); anything else stays.
    pub(super) fn take_building(&mut self) -> Option<Trigger> {
        match std::mem::take(self) {
            Reload::Building { trigger } => Some(trigger),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Ends the reload, whatever its stage: the trigger it was for.
    pub(super) fn end(&mut self) -> (Option<Rollout>, Option<Trigger>) {
        match std::mem::take(self) {
            Reload::Idle => (None, None),
            Reload::Building { trigger } => (None, Some(trigger)),
            Reload::Rolling(r) => {
                let trigger = r.trigger.clone();
                (Some(r), Some(trigger))
            }
        }
    }
}

pub(super) struct AppState {
    pub(super) plan: AppPlan,
    pub(super) settings: Settings,
    pub(super) slots: Vec<SlotState>,
    pub(super) gave_up_said: bool,
    /// The sockets every new instance gets: `listen`, then `port`, then ports learned
    /// from the instances' own `listen()` calls.
    pub(super) ports: Vec<ListenAddr>,
    /// The reload in flight: idle, building, or rolling.
    pub(super) reload: Reload,
    pub(super) queue: Queue<u64>,
    pub(super) reloads: u32,
    pub(super) last_reload: Option<LastReload>,
    /// File changes waiting for the end of their debounce window.
    pub(super) window: window::Window,
    /// Which changed paths the app's own starts cause (the loop guard).
    pub(super) echo: crate::watch::echo::EchoGuard,
    /// Whether the app was starting at the last tick (its start window is open).
    pub(super) in_start_window: bool,
    /// A rollout ran while the start window was open (it then closes without grace).
    pub(super) window_rolled: bool,
    /// The plan read at the last reload request, applied when its rollout begins.
    pub(super) next_plan: Option<AppPlan>,
    /// Gone from the ecosystem file (stopped; kept so indexes stay valid).
    pub(super) removed: bool,
    /// When the reload in flight began (its build included), for its duration.
    pub(super) reload_began: Option<Instant>,
    /// `ready_pattern`, compiled (it was checked when the file was read).
    pub(super) ready_re: Option<regex::Regex>,
    /// The app's `build` while it runs.
    pub(super) build: Option<build::Build>,
    /// When the last build ran (from, to): file changes made then are its own output.
    pub(super) last_build: Option<(Instant, Instant)>,
    /// `hotrun reload --canary MS`: the canary hold of the next rollout, over `canary`.
    pub(super) canary_once: Option<std::time::Duration>,
    /// `cron_restart`: the expression and its next run.
    pub(super) scheduled: Option<scheduled::Scheduled>,
}

impl AppState {
    pub(super) fn new(plan: AppPlan, ports: Vec<ListenAddr>, slots: Vec<SlotState>) -> AppState {
        AppState {
            settings: settings_of(&plan, &ports, false),
            slots,
            gave_up_said: false,
            ports,
            reload: Reload::Idle,
            queue: Queue::default(),
            reloads: 0,
            last_reload: None,
            window: Default::default(),
            echo: Default::default(),
            in_start_window: false,
            window_rolled: false,
            next_plan: None,
            removed: false,
            reload_began: None,
            ready_re: ready_regex(&plan),
            build: None,
            last_build: None,
            scheduled: None,
            canary_once: None,
            plan,
        }
    }
}

/// The app's `ready_pattern`, compiled.
pub(super) fn ready_regex(plan: &AppPlan) -> Option<regex::Regex> {
    plan.ready_pattern
        .as_deref()
        .and_then(|p| regex::Regex::new(p).ok())
}

/// The slot settings of an app; `learned` = its instances asked for a port already.
pub(super) fn settings_of(app: &AppPlan, ports: &[ListenAddr], learned: bool) -> Settings {
    Settings {
        policy: restart::Policy::of(app),
        wait_ready: app.wait_ready,
        expect_listen: learned || ports::expects_listen(app, ports),
        ready_pattern: app.ready_pattern.is_some(),
        listen_timeout: app.listen_timeout,
        kill_timeout: app.kill_timeout,
        kill_signal: app.kill_signal,
        drain_delay: app.drain_delay,
        probe: app.readiness_probe.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_stage_gives_up_only_what_is_asked() {
        let t0 = Instant::now();
        let rolling = || Reload::Rolling(Rollout::begin(Trigger::Command, vec![0], 1, t0).0);
        let building = || Reload::Building {
            trigger: Trigger::Watch,
        };
        // Each taker takes its own stage and leaves any other.
        let mut r = rolling();
        assert!(r.take_building().is_none() && r.rollout().is_some());
        assert!(r.take_rollout().is_some() && matches!(r, Reload::Idle));
        let mut b = building();
        assert!(b.take_rollout().is_none() && matches!(b, Reload::Building { .. }));
        assert_eq!(b.take_building(), Some(Trigger::Watch));
        assert!(matches!(b, Reload::Idle));
        let table = [
            (Reload::Idle, (false, None)),
            (building(), (false, Some(Trigger::Watch))),
            (rolling(), (true, Some(Trigger::Command))),
        ];
        for (mut stage, (had_rollout, trigger)) in table {
            let (rollout, t) = stage.end();
            assert_eq!((rollout.is_some(), t), (had_rollout, trigger));
            assert!(matches!(stage, Reload::Idle));
        }
    }
}

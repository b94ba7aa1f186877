//! Reload triggers besides signals and commands: file changes (debounced per app with a
//! trailing `watch_delay` window, so a burst is one reload) and memory over
//! `max_memory_restart` (that one instance alone gets the ready-gated replacement, with a
//! back-off when it is over again right after its replacement).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::rollout::Trigger;
use super::slot::Phase;
use super::window::Verdict;
use super::Supervisor;
use crate::logs;
use crate::plan::Plan;

/// How many changed paths a reload's log line names.
const SHOWN_PATHS: usize = 3;
/// An instance over its limit again within this time of its replacement backs off.
const MEMORY_RELAPSE: Duration = Duration::from_secs(60);
/// The first back-off, doubled at each relapse up to `MEMORY_BACKOFF_CAP`.
const MEMORY_BACKOFF: Duration = Duration::from_secs(10);
const MEMORY_BACKOFF_CAP: Duration = Duration::from_secs(600);

/// Memory replacements of one slot.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct MemoryHistory {
    /// When the slot was last replaced for its memory.
    replaced_at: Option<Instant>,
    /// The current back-off (zero until a relapse).
    backoff: Duration,
    /// No replacement before this instant.
    not_before: Option<Instant>,
}

/// An instance this far over its limit (1.5x) while it backs off is restarted at once: the
/// back-off never lets a fast leak take the machine.
pub(super) fn memory_cap(limit: u64) -> u64 {
    limit.saturating_add(limit / 2)
}

/// What to do about an instance over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemoryVerdict {
    /// The ready-gated replacement.
    Replace,
    /// Over `memory_cap` while it backs off: stop it and start it again now (the back-off
    /// goes on).
    Restart,
    /// Over again right after its replacement: wait; `say` on the first notice.
    Wait { until: Instant, say: bool },
}

impl MemoryHistory {
    /// The verdict on an instance found over its limit at `now`, `past_cap` when over
    /// `memory_cap` too. Pure.
    pub fn on_over(&mut self, now: Instant, past_cap: bool) -> MemoryVerdict {
        match self.wait_or_replace(now) {
            MemoryVerdict::Wait { .. } if past_cap => MemoryVerdict::Restart,
            verdict => verdict,
        }
    }

    fn wait_or_replace(&mut self, now: Instant) -> MemoryVerdict {
        if let Some(until) = self.not_before.filter(|&t| now < t) {
            return MemoryVerdict::Wait { until, say: false };
        }
        match self.replaced_at {
            // Over again soon after a replacement it did not wait for: back off.
            Some(t)
                if now.saturating_duration_since(t) < MEMORY_RELAPSE
                    && self.not_before.is_none_or(|nb| nb <= t) =>
            {
                self.backoff = (self.backoff * 2).clamp(MEMORY_BACKOFF, MEMORY_BACKOFF_CAP);
                let until = now + self.backoff;
                self.not_before = Some(until);
                MemoryVerdict::Wait { until, say: true }
            }
            Some(t) if now.saturating_duration_since(t) >= MEMORY_RELAPSE => {
                *self = MemoryHistory::default();
                self.replaced_at = Some(now);
                MemoryVerdict::Replace
            }
            _ => {
                self.replaced_at = Some(now);
                MemoryVerdict::Replace
            }
        }
    }
}

fn shown(path: &Path, cwd: &Path) -> String {
    match path.strip_prefix(cwd) {
        // The app's folder itself (a poll sees its time change when a file is added).
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

impl Supervisor {
    /// Events from the watcher: note the changes of each app; say what went wrong. The
    /// debounce window trails the time each change happened (the tap's record of it comes
    /// at once; the debouncer's copy later, and is dropped once a window covered it).
    pub(super) fn on_fs_events(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let found = watcher.collect();
        for e in &found.errors {
            self.logs.say(&e.to_string());
        }
        for note in &found.notes {
            self.logs.say(note);
        }
        if found.config_changed && self.shutdown == super::Shutdown::Running {
            self.logs.say("the ecosystem file changed -> reload");
            self.reload_apps(None, Trigger::Watch, None);
        }
        let now = self.fx.now();
        for changes in found.changes {
            if self.shutdown != super::Shutdown::Running {
                break;
            }
            let app = &mut self.apps[changes.app];
            // What changes while the app builds is the build's own output, by the time
            // it changed (the debouncer's copy comes later); the debouncer's copy of a
            // change a closed window took opens no window of its own.
            let building_since = app.build.as_ref().map(|b| b.started);
            let last_build = app.last_build;
            let by_build = |at: Instant| {
                building_since.is_some_and(|s| at >= s)
                    || last_build.is_some_and(|(from, to)| from <= at && at <= to)
            };
            let delay = app.plan.watch_delay;
            for change in changes.paths {
                if app.window.covers(&change) || by_build(change.at) {
                    continue;
                }
                app.echo.seen(&change.path, change.at);
                app.window.add(change, delay, now);
            }
            if changes.missed {
                app.window.missed();
            }
        }
    }

    /// Reloads the apps whose debounce window has passed.
    pub(super) fn fire_changes(&mut self, now: Instant) {
        for a in 0..self.apps.len() {
            if !self.apps[a].window.due(now) {
                continue;
            }
            let delay = self.apps[a].plan.watch_delay;
            let tap = self.watcher.as_ref().and_then(|w| w.last_change(a, now));
            match self.apps[a].window.verdict(now, delay, tap) {
                Some(Verdict::Fire) => {}
                Some(Verdict::Wait(until)) => {
                    self.apps[a].window.wait(until);
                    continue;
                }
                None => continue,
            }
            let paths = self.apps[a].window.close();
            let sorted = self.apps[a].echo.sort(paths);
            let app = &self.apps[a].plan;
            for echo in &sorted.new_echoes {
                let name = shown(echo, &app.cwd);
                self.logs.say(&format!(
                    "{}: {name} changed during two starts and at no other time: taken as written by the app's start, it reloads nothing until it changes outside a start (to ignore it for good: ignore_watch: ['{name}'])",
                    app.name
                ));
            }
            if sorted.reload.is_empty() {
                continue;
            }
            let count = sorted.reload.len();
            let mut list: Vec<String> = sorted
                .reload
                .iter()
                .take(SHOWN_PATHS)
                .map(|p| shown(p, &app.cwd))
                .collect();
            if count > list.len() {
                list.push("...".into());
            }
            let what = if count == 1 { "file" } else { "files" };
            self.logs.say(&format!(
                "{}: {count} {what} changed ({}) -> reload",
                app.name,
                list.join(", ")
            ));
            self.reload_apps(Some(vec![a]), Trigger::Watch, None);
        }
    }

    /// Whether app `a` is starting: a reload or build in flight, an instance not ready yet.
    fn starting(&self, a: usize) -> bool {
        let app = &self.apps[a];
        app.reload.rollout().is_some()
            || app.build.is_some()
            || app.slots.iter().any(|s| {
                !s.surplus && matches!(s.phase, Phase::Pending { .. } | Phase::Starting { .. })
            })
    }

    /// Opens and closes the start windows (for the loop guard) of each watched app: open
    /// while it starts, closed once it is ready and settled. Nothing is added after a
    /// start: a script's or the user's edit right after a reload must count as theirs.
    pub(super) fn track_start_windows(&mut self, now: Instant) {
        for a in 0..self.apps.len() {
            let starting = !self.apps[a].plan.watch.is_empty() && self.starting(a);
            let app = &mut self.apps[a];
            app.window_rolled |= starting && app.reload.rollout().is_some();
            match (app.in_start_window, starting) {
                (false, true) => app.echo.opened(now),
                // A start that ends at readiness (no old instance drained after it) holds
                // what notify stamps a little late (see `LATE_STAMP`).
                (true, false) if !app.window_rolled => {
                    app.echo.closed(now + crate::watch::echo::LATE_STAMP)
                }
                (true, false) => app.echo.closed(now),
                _ => {}
            }
            if !starting {
                app.window_rolled = false;
            }
            self.apps[a].in_start_window = starting;
        }
    }

    /// Samples every online instance's memory; one over its app's limit is replaced.
    pub(super) fn check_memory(&mut self, now: Instant) {
        let mut targets = Vec::new();
        for (a, app) in self.apps.iter().enumerate().filter(|(_, a)| !a.removed) {
            let Some(limit) = app.plan.max_memory_restart else {
                continue;
            };
            for (s, slot) in app.slots.iter().enumerate() {
                if let Phase::Online { run, .. } = &slot.phase {
                    targets.push((a, s, run.pid, limit));
                }
            }
        }
        if targets.is_empty() {
            return;
        }
        let pgids: Vec<i32> = targets.iter().map(|t| t.2).collect();
        let rss: Vec<u64> = self
            .fx
            .group_usage(&pgids)
            .iter()
            .map(|u| u.rss_bytes)
            .collect();
        for ((a, s, _, limit), bytes) in targets.into_iter().zip(rss) {
            if bytes > limit {
                self.over_memory(a, s, bytes, limit, now);
            }
        }
    }

    fn over_memory(&mut self, a: usize, s: usize, bytes: u64, limit: u64, now: Instant) {
        if self.apps[a].reload.rollout().is_some_and(|r| r.covers(s)) {
            return;
        }
        let label = self.label(a, s);
        let mb = |b: u64| format!("{:.1} MB", b as f64 / 1048576.0);
        let past_cap = bytes > memory_cap(limit);
        match self.apps[a].slots[s].memory.on_over(now, past_cap) {
            MemoryVerdict::Wait { say: false, .. } => {}
            MemoryVerdict::Wait { until, say: true } => {
                let wait = until.saturating_duration_since(now).as_secs();
                self.logs.say(&format!(
                    "{label} is over max_memory_restart again ({} > {}) right after its replacement; not replaced again for {wait} s",
                    mb(bytes),
                    mb(limit)
                ));
            }
            MemoryVerdict::Restart => {
                self.logs.say(&format!(
                    "{label} uses {}, over 1.5 x max_memory_restart ({}) while it backs off -> restarting it now",
                    mb(bytes),
                    mb(memory_cap(limit))
                ));
                let slot = &mut self.apps[a].slots[s];
                slot.restart_after_stop = true;
                self.apply(a, s, super::slot::Input::Stop, now);
            }
            MemoryVerdict::Replace => {
                self.logs.say(&format!(
                    "{label} uses {} of memory, over max_memory_restart {} -> replacing it",
                    mb(bytes),
                    mb(limit)
                ));
                self.request_reload(a, Trigger::Memory { slots: vec![s] }, None);
            }
        }
    }
}

/// Waits for the watcher's events; forever when nothing is watched.
pub(super) async fn wait_fs(wake: &Option<std::sync::Arc<tokio::sync::Notify>>) {
    match wake {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// The watcher of every app that watches, or none. `runtime` is hotrun's runtime folder
/// (never a change, wherever it is).
pub(super) fn watching(
    plan: &Plan,
    config: Option<PathBuf>,
    poll: Option<Duration>,
    runtime: &Path,
    wake: std::sync::Arc<tokio::sync::Notify>,
) -> Result<Option<crate::watch::Watcher>, String> {
    use crate::watch::{AppWatch, IgnoreSet, Watcher};
    let mut apps = Vec::new();
    let mut polling = poll;
    let mut shortest = None::<Duration>;
    for (i, app) in plan.apps.iter().enumerate() {
        if app.watch.is_empty() {
            continue;
        }
        let own: Vec<_> = [&app.logs.out_file, &app.logs.error_file, &app.logs.log_file]
            .into_iter()
            .flatten()
            .cloned()
            .chain([runtime.to_path_buf()])
            .collect();
        let ignore = IgnoreSet::new(&app.cwd, &app.ignore_watch, &own)
            .map_err(|e| format!("{}: {e}", app.name))?;
        for root in &app.watch {
            if !root.exists() {
                logs::say(&format!(
                    "{}: watch path {} does not exist (hotrun watches for it to appear)",
                    app.name,
                    root.display()
                ));
            }
        }
        if let Some(p) = app.watch_poll {
            polling = Some(polling.map_or(p, |q| q.min(p)));
        }
        shortest = Some(shortest.map_or(app.watch_delay, |d| d.min(app.watch_delay)));
        apps.push(AppWatch {
            app: i,
            roots: app.watch.clone(),
            ignore,
        });
    }
    if apps.is_empty() && config.is_none() {
        return Ok(None);
    }
    let shortest = shortest.unwrap_or(Duration::from_millis(100));
    let mut watcher =
        Watcher::start(apps, config, polling, shortest, wake).map_err(|e| e.to_string())?;
    for note in watcher.take_notes() {
        logs::say(&note);
    }
    Ok(Some(watcher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_paths_are_named_relative_to_the_app() {
        let cwd = Path::new("/srv/app");
        let table = [
            ("/srv/app/src/a.js", "src/a.js"),
            ("/srv/app", "."),
            ("/elsewhere/x.js", "/elsewhere/x.js"),
        ];
        for (path, want) in table {
            assert_eq!(shown(Path::new(path), cwd), want, "{path}");
        }
    }

    #[test]
    fn an_instance_over_again_right_after_its_replacement_backs_off() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut h = MemoryHistory::default();
        // (seconds after t0, verdict); over the cap: see below.
        let table = [
            (0, MemoryVerdict::Replace),
            (
                2,
                MemoryVerdict::Wait {
                    until: s(12),
                    say: true,
                },
            ),
            (
                5,
                MemoryVerdict::Wait {
                    until: s(12),
                    say: false,
                },
            ),
            (12, MemoryVerdict::Replace),
            (
                14,
                MemoryVerdict::Wait {
                    until: s(34),
                    say: true,
                },
            ),
            (34, MemoryVerdict::Replace),
            // A long time later: back to the start.
            (200, MemoryVerdict::Replace),
            (
                201,
                MemoryVerdict::Wait {
                    until: s(211),
                    say: true,
                },
            ),
        ];
        for (at, want) in table {
            assert_eq!(h.on_over(s(at), false), want, "at {at} s");
        }
    }

    #[test]
    fn past_the_cap_an_instance_that_backs_off_is_restarted_at_once() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut h = MemoryHistory::default();
        // (seconds after t0, over 1.5x, verdict)
        let table = [
            // The first time it gets the ready-gated replacement, however far over.
            (0, true, MemoryVerdict::Replace),
            (
                2,
                false,
                MemoryVerdict::Wait {
                    until: s(12),
                    say: true,
                },
            ),
            (3, true, MemoryVerdict::Restart),
            (
                5,
                false,
                MemoryVerdict::Wait {
                    until: s(12),
                    say: false,
                },
            ),
            (6, true, MemoryVerdict::Restart),
            // The back-off ran on: once over, the ready-gated replacement again.
            (12, true, MemoryVerdict::Replace),
        ];
        for (at, past_cap, want) in table {
            assert_eq!(h.on_over(s(at), past_cap), want, "at {at} s");
        }
        assert_eq!(memory_cap(100), 150);
        assert_eq!(memory_cap(u64::MAX), u64::MAX);
    }
}

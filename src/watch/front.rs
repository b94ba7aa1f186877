//! The watcher's front: notify-debouncer-full over inotify (or notify's poller), handing
//! its batches to the event loop, with a tap on the raw events underneath.
//!
//! The debouncer gives the event hygiene: one event per path and kind, a create and remove
//! of the same path cancelled, renames paired (inotify's cookies) into one `Both` event, a
//! kernel queue overflow turned into one rescan event. It holds each event for `hold` and
//! sends what is that old at each tick, so a burst longer than that arrives over several
//! batches, and a change reaches the loop up to two holds after it happened.
//!
//! The tap also drops, before the debouncer, the events no app needs: opens and reads,
//! siblings in a root's parent folder, ignored paths, hotrun's own output.
//!
//! So that the loop's trailing `watch_delay` window still ends that long after an app's
//! last change, the backend under the debouncer is wrapped (`Tapped`): each raw change
//! event stamps the time on the apps it concerns (`Tap`), lock-free. The loop ends a window
//! only when no app's stamp is newer than the window allows and the change with the newest
//! stamp has been handed over (or can no longer be: the debouncer may cancel events).
//!
//! The debouncer's thread only queues a batch and wakes the loop; a queue the loop has not
//! taken for too long becomes one rescan instead of unbounded memory.

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::{
    self, Config, Event, EventHandler, PollWatcher, RecommendedWatcher, RecursiveMode, WatcherKind,
};
use notify_debouncer_full::{
    new_debouncer_opt, DebounceEventResult, DebouncedEvent, Debouncer, NoCache,
};
use tokio::sync::Notify;

use super::scope::Scope;

/// Events kept between two passes of the event loop, at most.
const MAX_QUEUED: usize = 50_000;
/// Bounds of the debouncer's hold.
const MIN_HOLD: Duration = Duration::from_millis(10);
const MAX_HOLD: Duration = Duration::from_millis(250);
/// How much later than the end of the window a change may reach the loop: the hold and
/// one tick beyond the delay, at most (see `hold_for`).
const LATE_BY: Duration = Duration::from_millis(40);

/// What the debouncer's thread hands to the event loop.
#[derive(Default)]
pub(super) struct Queue {
    pub events: Vec<DebouncedEvent>,
    /// Events were dropped (queue full, or the backend failed): look at everything again.
    pub overflow: bool,
}

pub(super) type Shared = Arc<Mutex<Queue>>;

/// When each app (by its index in the scope) last had a raw change event.
pub(super) struct Tap {
    scope: Arc<Scope>,
    base: Instant,
    /// Nanoseconds after `base`, plus one; 0 for never.
    last: Vec<AtomicU64>,
}

impl Tap {
    pub fn new(scope: Arc<Scope>) -> Tap {
        let last = scope.apps.iter().map(|_| AtomicU64::new(0)).collect();
        Tap {
            scope,
            base: Instant::now(),
            last,
        }
    }

    /// Stamps the apps a raw event changes; whether the debouncer needs it at all. It
    /// does not need what changes nothing (a file opened or read), nor what no app owns
    /// (a sibling in a root's parent folder, an ignored path, hotrun's own output): those
    /// are dropped here, before they cost the debouncer and the event loop anything.
    fn admit(&self, event: &Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        if !super::is_change(&event.kind) {
            return false;
        }
        let stamp = self.base.elapsed().as_nanos() as u64 + 1;
        let mut wanted = false;
        for path in &event.paths {
            if self.scope.is_config(path) {
                wanted = true;
                continue;
            }
            let mut owners = self.scope.owners(path).peekable();
            if owners.peek().is_none() || self.scope.is_own(path) {
                continue;
            }
            wanted = true;
            for (i, _) in owners {
                self.last[i].fetch_max(stamp, Ordering::Relaxed);
            }
        }
        wanted
    }

    /// When app `i` (its index in the scope) last changed, as the backend saw it.
    pub fn last_change(&self, i: usize) -> Option<Instant> {
        match self.last.get(i)?.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n - 1)),
        }
    }
}

thread_local! {
    /// The tap the next `Tapped::new` on this thread takes: the debouncer builds its
    /// backend itself, with no way to pass it anything but its handler and config.
    static NEXT_TAP: RefCell<Option<Arc<Tap>>> = const { RefCell::new(None) };
}

/// A notify backend whose raw events go through a `Tap` on their way to the debouncer.
pub(super) struct Tapped<W> {
    inner: W,
}

impl<W: notify::Watcher> notify::Watcher for Tapped<W> {
    fn new<F: EventHandler>(mut handler: F, config: Config) -> notify::Result<Self> {
        let tap = NEXT_TAP.with(|t| t.borrow_mut().take());
        let inner = W::new(
            move |res: notify::Result<Event>| {
                if let (Some(tap), Ok(event)) = (&tap, &res) {
                    if !tap.admit(event) {
                        return;
                    }
                }
                handler.handle_event(res);
            },
            config,
        )?;
        Ok(Tapped { inner })
    }

    fn watch(&mut self, path: &Path, mode: RecursiveMode) -> notify::Result<()> {
        self.inner.watch(path, mode)
    }

    fn unwatch(&mut self, path: &Path) -> notify::Result<()> {
        self.inner.unwatch(path)
    }

    fn configure(&mut self, option: Config) -> notify::Result<bool> {
        self.inner.configure(option)
    }

    fn kind() -> WatcherKind {
        W::kind()
    }
}

/// The debouncer, over inotify or over notify's poller.
pub(super) enum Front {
    Native(Debouncer<Tapped<RecommendedWatcher>, NoCache>),
    Poll(Debouncer<Tapped<PollWatcher>, NoCache>),
}

/// How long the debouncer holds an event; its tick is the same, so a change reaches the
/// loop between one and two holds after it happened. Two holds are the delay plus
/// `LATE_BY`: the window's end is at most that late, and the thread wakes as seldom as
/// that allows while idle (every 70 ms for the default 100 ms: 143 wake-ups in 10 s, ~10 ms
/// of CPU on a small VM, where one costs ~70 µs). A change made just after a tick reaches
/// the loop up to 40 ms after its window; one made early in a tick, at the window's end.
pub(super) fn hold_for(shortest_delay: Duration) -> Duration {
    ((shortest_delay + LATE_BY) / 2).clamp(MIN_HOLD, MAX_HOLD)
}

impl Front {
    /// Starts the debouncer; `poll` polls at that interval instead of inotify.
    pub fn start(
        hold: Duration,
        poll: Option<Duration>,
        tap: Arc<Tap>,
        queue: Shared,
        wake: Arc<Notify>,
    ) -> notify::Result<Front> {
        let handler = move |res: DebounceEventResult| {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            match res {
                Ok(batch) if q.events.len() + batch.len() <= MAX_QUEUED => q.events.extend(batch),
                // Too many, or errors of the backend: look at everything again.
                _ => q.overflow = true,
            }
            drop(q);
            wake.notify_one();
        };
        NEXT_TAP.with(|t| *t.borrow_mut() = Some(tap));
        let config = Config::default();
        let front = match poll {
            Some(interval) => new_debouncer_opt(
                hold,
                Some(hold),
                handler,
                NoCache,
                config.with_poll_interval(interval),
            )
            .map(Front::Poll),
            None => {
                new_debouncer_opt(hold, Some(hold), handler, NoCache, config).map(Front::Native)
            }
        };
        NEXT_TAP.with(|t| t.borrow_mut().take());
        front
    }

    pub fn watch(&mut self, path: &Path) -> notify::Result<()> {
        match self {
            Front::Native(d) => d.watch(path, RecursiveMode::NonRecursive),
            Front::Poll(d) => d.watch(path, RecursiveMode::NonRecursive),
        }
    }

    /// Forgets a watch; one the kernel already dropped (its folder is gone) is no error.
    pub fn unwatch(&mut self, path: &Path) {
        let _ = match self {
            Front::Native(d) => d.unwatch(path),
            Front::Poll(d) => d.unwatch(path),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_lets_a_change_reach_the_loop_at_most_40_ms_after_its_window() {
        let ms = Duration::from_millis;
        for (delay, hold) in [(0, 20), (4, 22), (100, 70), (300, 170), (2000, 250)] {
            assert_eq!(hold_for(ms(delay)), ms(hold), "watch_delay {delay} ms");
        }
        // Two holds (the most a change waits in the debouncer) end within 40 ms of the
        // window, wherever the hold is not at its bounds.
        for delay in [20, 100, 300] {
            assert!(hold_for(ms(delay)) * 2 <= ms(delay) + LATE_BY, "{delay}");
        }
    }
}

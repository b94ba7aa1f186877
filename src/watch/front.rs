//! The watcher's front: notify-debouncer-full over inotify (or notify's poller), handing
//! its batches to the event loop, with a tap on the raw events underneath.
//!
//! The debouncer gives the event hygiene: one event per path and kind, a create and remove
//! of the same path cancelled, renames paired (inotify's cookies) into one `Both` event, a
//! kernel queue overflow turned into one rescan event. It holds each event for `hold` and
//! sends what is that old at each tick, so a burst longer than that arrives over several
//! batches, and a change reaches the loop up to two holds after it happened. Its batches
//! place watches on new folders, forget removed ones and start rescans.
//!
//! The backend under the debouncer is wrapped (`Tapped`), so the tap sees each raw event
//! first. It drops the events no app needs (opens and reads, siblings in a root's parent
//! folder, ignored paths, hotrun's own output) before they cost the debouncer anything.
//! Of the others it stamps the time on the apps they concern (lock-free) and, once the
//! debouncer has the event, notes each path in the app's `Record` (record.rs: a lock of its
//! own per app, the first 100 distinct paths), waking the loop when a record stops being
//! empty. So the loop opens an app's trailing `watch_delay` window at the first raw change
//! and ends it exactly that long after the last, whatever the debouncer's tick, with the
//! paths the tap saw; the debouncer's later copies of those changes are known by their time
//! (a raw event's stamp in the record is taken after the debouncer stamped it, and before
//! the next raw event). Only when a record overflowed does the loop wait for the debouncer
//! to hand the rest over.
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

use super::record::{self, Effect, Record};
use super::scope::Scope;

/// Events kept between two passes of the event loop, at most.
const MAX_QUEUED: usize = 50_000;
/// Bounds of the debouncer's hold.
const MIN_HOLD: Duration = Duration::from_millis(10);
const MAX_HOLD: Duration = Duration::from_millis(250);
/// How much later than the end of the window the debouncer may hand a change over: the
/// hold and one tick beyond the delay, at most (see `hold_for`).
const LATE_BY: Duration = Duration::from_millis(40);

/// What the debouncer's thread hands to the event loop.
#[derive(Default)]
pub(super) struct Queue {
    pub events: Vec<DebouncedEvent>,
    /// Events were dropped (queue full, or the backend failed): look at everything again.
    pub overflow: bool,
}

pub(super) type Shared = Arc<Mutex<Queue>>;

/// A path of a raw event the tap admitted, for app `i` (its index in the scope).
type Noted = (usize, std::path::PathBuf, Effect);

/// When each app (by its index in the scope) last had a raw change event, and the paths.
pub(super) struct Tap {
    scope: Arc<Scope>,
    base: Instant,
    /// Nanoseconds after `base`, plus one; 0 for never.
    last: Vec<AtomicU64>,
    records: Vec<Mutex<Record>>,
    /// Wakes the event loop.
    wake: Arc<Notify>,
}

impl Tap {
    pub fn new(scope: Arc<Scope>, wake: Arc<Notify>) -> Tap {
        let last = scope.apps.iter().map(|_| AtomicU64::new(0)).collect();
        let records = scope.apps.iter().map(|_| Mutex::default()).collect();
        Tap {
            scope,
            base: Instant::now(),
            last,
            records,
            wake,
        }
    }

    /// Stamps the apps a raw event changes; whether the debouncer needs it at all, and the
    /// paths to note once it has it. It does not need what changes nothing (a file opened
    /// or read), nor what no app owns (a sibling in a root's parent folder, an ignored
    /// path, hotrun's own output): those are dropped here, before they cost the debouncer
    /// and the event loop anything.
    fn admit(&self, event: &Event) -> Option<Vec<Noted>> {
        if event.need_rescan() {
            return Some(Vec::new());
        }
        if !super::is_change(&event.kind) {
            return None;
        }
        let stamp = self.base.elapsed().as_nanos() as u64 + 1;
        let mut wanted = false;
        let mut noted = Vec::new();
        for (n, path) in event.paths.iter().enumerate() {
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
                noted.push((i, path.clone(), record::effect(&event.kind, n)));
            }
        }
        wanted.then_some(noted)
    }

    /// Notes what `admit` found, now that the debouncer has the event: the time here is
    /// after the debouncer's own stamp of it, and before that of the next raw event (one
    /// backend thread calls both in turn).
    fn note(&self, noted: Vec<Noted>) {
        if noted.is_empty() {
            return;
        }
        let at = Instant::now();
        let mut wake = false;
        for (i, path, effect) in noted {
            let mut record = self.records[i].lock().unwrap_or_else(|e| e.into_inner());
            wake |= record.note(&path, effect, at);
        }
        if wake {
            self.wake.notify_one();
        }
    }

    /// Takes what was noted of app `i` (its index in the scope).
    pub fn take(&self, i: usize) -> Record {
        let mut record = self.records[i].lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *record)
    }

    /// When app `i` (its index in the scope) last changed, as the backend saw it (before
    /// the debouncer had the event).
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
                let noted = match (&tap, &res) {
                    (Some(tap), Ok(event)) => match tap.admit(event) {
                        Some(noted) => noted,
                        None => return,
                    },
                    _ => Vec::new(),
                };
                handler.handle_event(res);
                if let Some(tap) = &tap {
                    tap.note(noted);
                }
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

/// How long the debouncer holds an event; its tick is the same, so it hands a change over
/// between one and two holds after it happened. Two holds are the delay plus `LATE_BY`,
/// and the thread wakes as seldom as that allows while idle (every 70 ms for the default
/// 100 ms: 143 wake-ups in 10 s, ~10 ms of CPU on a small VM, where one costs ~60 µs).
/// The window ends on the tap's record, not on the hand-over; only a window whose record
/// overflowed waits for it, then at most 40 ms beyond its end; a new folder is watched
/// that long after it was made at most.
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
    use crate::watch::{AppWatch, Fate, IgnoreSet};
    use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
    use std::path::PathBuf;

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn the_tap_records_what_an_app_owns_once_the_debouncer_has_it_and_wakes_the_loop() {
        let root = PathBuf::from("/srv/app");
        let ignore = IgnoreSet::new(&root, &["*.log".to_string()], &[]).unwrap();
        let scope = Arc::new(Scope::new(
            vec![AppWatch {
                app: 3,
                roots: vec![root],
                ignore,
            }],
            Some("/srv/app/ecosystem.config.js".into()),
        ));
        let wake = Arc::new(Notify::new());
        let tap = Tap::new(scope, wake.clone());
        let create = EventKind::Create(CreateKind::File);
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let read = EventKind::Access(AccessKind::Open(AccessMode::Read));
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        // (event, whether the debouncer gets it, the paths noted for the app)
        let table = [
            (
                event(create, &["/srv/app/a.js"]),
                true,
                vec!["/srv/app/a.js"],
            ),
            (
                event(close, &["/srv/app/a.js"]),
                true,
                vec!["/srv/app/a.js"],
            ),
            (event(read, &["/srv/app/a.js"]), false, vec![]),
            (
                event(create, &["/srv/app/node_modules/x.js"]),
                false,
                vec![],
            ),
            (event(create, &["/srv/app/out.log"]), false, vec![]),
            (event(create, &["/srv/other.js"]), false, vec![]),
            // The ecosystem file goes to the debouncer (it reloads every app), not here.
            (
                event(close, &["/srv/app/ecosystem.config.js"]),
                true,
                vec![],
            ),
            (
                event(both, &["/srv/app/tmp.js", "/srv/app/b.js"]),
                true,
                vec!["/srv/app/tmp.js", "/srv/app/b.js"],
            ),
        ];
        for (n, (e, wanted, paths)) in table.into_iter().enumerate() {
            let noted = tap.admit(&e);
            assert_eq!(noted.is_some(), wanted, "row {n}");
            let got: Vec<&str> = noted
                .iter()
                .flatten()
                .map(|(_, p, _)| p.to_str().unwrap())
                .collect();
            assert_eq!(got, paths, "row {n}");
            assert!(noted.iter().flatten().all(|(i, ..)| *i == 0), "row {n}");
            tap.note(noted.unwrap_or_default());
        }
        let last = tap.last_change(0).expect("stamped");
        let record = tap.take(0);
        assert!(tap.take(0).is_empty(), "taken");
        let fate = |born, gone| Fate { born, gone };
        let kept: Vec<(&str, Fate)> = record
            .paths
            .iter()
            .map(|(p, _, f)| (p.to_str().unwrap(), *f))
            .collect();
        assert_eq!(
            kept,
            [
                ("/srv/app/a.js", fate(true, false)),
                ("/srv/app/tmp.js", fate(false, true)),
                ("/srv/app/b.js", fate(true, false)),
            ]
        );
        // A path's time is after the stamp of its event (and the debouncer's of it).
        let newest = record.paths.iter().map(|(_, at, _)| *at).max();
        assert!(newest >= Some(last));
        // The loop was woken (once: the record was empty only before the first).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let woken = tokio::time::timeout(Duration::from_millis(10), wake.notified());
            assert!(woken.await.is_ok(), "the loop is woken");
        });
    }

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

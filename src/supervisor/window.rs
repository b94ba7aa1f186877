//! The debounce window of one app's file changes: the changes waiting for its end (a
//! trailing `watch_delay` after the app's last raw change, at most `MAX_DEBOUNCE` after its
//! first), and the latest change the last closed window covered, so that the debouncer's
//! late copy of a change the tap already brought opens no second window. Pure: the event
//! loop feeds it what the watcher saw, asks it when to fire, and closes it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::watch::{By, Changed, Fate};

/// A burst that never pauses still reloads after this long.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// How many distinct changed paths are counted exactly.
const COUNTED_PATHS: usize = 100_000;
/// The shortest window (`watch_delay: 0`): the raw events of one write (made, written,
/// closed) come within microseconds, and are one change.
const SHORTEST: Duration = Duration::from_millis(10);

/// What is known of one pending path.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// The debouncer handed it over: it did not cancel it.
    handed_over: bool,
    /// What became of it, by the tap's raw events.
    fate: Option<Fate>,
}

impl Known {
    /// Whether it reloads: a path the tap saw made and gone again (a temp file) does not,
    /// unless the debouncer handed it over all the same.
    fn counts(&self) -> bool {
        self.handed_over || !self.fate.is_some_and(Fate::cancelled)
    }
}

/// Changes of one app waiting for the end of their debounce window.
#[derive(Debug)]
struct Changes {
    first: Instant,
    fire_at: Instant,
    /// The time of the latest change noted.
    latest: Instant,
    /// Distinct paths, in the order they came.
    paths: Vec<PathBuf>,
    known: HashMap<PathBuf, Known>,
    /// The tap's record overflowed: wait for the debouncer to hand the rest over.
    missed: bool,
}

/// When the window of an app with changes pending ends, as `Window::verdict` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not before this instant.
    Wait(Instant),
    Fire,
}

/// An app's debounce window.
#[derive(Debug, Default)]
pub(super) struct Window {
    pending: Option<Changes>,
    /// The latest change a closed window covered.
    settled: Option<Instant>,
}

/// Whether `change` is the debouncer's copy of one that a window closed at `settled`
/// covered: the tap notes each raw event once, after the debouncer stamped it and before
/// the next raw event, so a handed-over event no later than the latest change a window
/// took is one that window took (or one it could not tell apart: the same time).
pub(super) fn covered(change: &Changed, settled: Option<Instant>) -> bool {
    change.by == By::Debouncer && settled.is_some_and(|s| change.at <= s)
}

fn window_of(delay: Duration) -> Duration {
    delay.max(SHORTEST)
}

impl Window {
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|c| c.fire_at)
    }

    /// Whether the window has changes and its end has come at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.pending.as_ref().is_some_and(|c| c.fire_at <= now)
    }

    /// Whether `change` is already covered by a closed window (`covered`).
    pub fn covers(&self, change: &Changed) -> bool {
        covered(change, self.settled)
    }

    /// Notes a change (not `covers`ed) seen by `now`: it opens the window, or moves its
    /// end to `delay` after the change.
    pub fn add(&mut self, change: Changed, delay: Duration, now: Instant) {
        let at = change.at.min(now);
        let c = self.pending.get_or_insert(Changes {
            first: at,
            fire_at: at,
            latest: at,
            paths: Vec::new(),
            known: HashMap::new(),
            missed: false,
        });
        c.latest = c.latest.max(at);
        let (handed_over, fate) = match change.by {
            By::Debouncer => (true, None),
            By::Tap(fate) => (false, Some(fate)),
        };
        if let Some(k) = c.known.get_mut(&change.path) {
            k.handed_over |= handed_over;
            k.fate = match (k.fate, fate) {
                (Some(old), Some(new)) => Some(old.merge(new)),
                (old, new) => old.or(new),
            };
        } else if c.known.len() < COUNTED_PATHS {
            c.known
                .insert(change.path.clone(), Known { handed_over, fate });
            c.paths.push(change.path);
        }
        let delay = window_of(delay);
        let trailing = (at + delay).max(c.fire_at);
        c.fire_at = trailing.min(c.first + delay.max(MAX_DEBOUNCE));
    }

    /// The tap's record overflowed: the window also waits for the debouncer's hand-over.
    pub fn missed(&mut self) {
        if let Some(c) = &mut self.pending {
            c.missed = true;
        }
    }

    /// Whether a due window ends at `now` (none without changes): the tap's newest raw change (`tap`: when, and
    /// until when the debouncer may still hand it over) moves it on, as long as its record
    /// was not taken yet; a window whose record overflowed waits for the hand-over.
    pub fn verdict(
        &self,
        now: Instant,
        delay: Duration,
        tap: Option<(Instant, Option<Instant>)>,
    ) -> Option<Verdict> {
        let c = self.pending.as_ref()?;
        let delay = window_of(delay);
        let mut end = c.fire_at;
        if let Some((last, on_its_way)) = tap {
            end = end.max(last + delay);
            if c.missed {
                end = end.max(on_its_way.unwrap_or(last));
            }
        }
        let end = end.min(c.first + delay.max(MAX_DEBOUNCE));
        Some(if end > now {
            Verdict::Wait(end)
        } else {
            Verdict::Fire
        })
    }

    /// Moves the end of the pending window to `until`.
    pub fn wait(&mut self, until: Instant) {
        if let Some(c) = &mut self.pending {
            c.fire_at = until;
        }
    }

    /// Closes the window: the paths that reload, in the order they came. What the
    /// debouncer hands over later of what it covered is then `covers`ed.
    pub fn close(&mut self) -> Vec<PathBuf> {
        let Some(c) = self.pending.take() else {
            return Vec::new();
        };
        self.settled = self.settled.max(Some(c.latest));
        let known = c.known;
        c.paths
            .into_iter()
            .filter(|p| known.get(p).is_some_and(Known::counts))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn change(path: &str, at: Instant, by: By) -> Changed {
        Changed {
            path: path.into(),
            at,
            by,
        }
    }

    const TAP: By = By::Tap(Fate {
        born: false,
        gone: false,
    });

    #[test]
    fn the_debouncers_copy_of_a_change_a_closed_window_took_is_covered() {
        let t0 = Instant::now();
        let at = |n| ms(t0, n);
        // (who, event time, latest change of the closed window) -> covered
        let table = [
            (By::Debouncer, 5, None, false),
            (By::Debouncer, 5, Some(10), true),
            (By::Debouncer, 10, Some(10), true),
            (By::Debouncer, 11, Some(10), false),
            // The tap notes each raw event once: never a copy.
            (TAP, 5, Some(10), false),
            (TAP, 11, Some(10), false),
            (TAP, 5, None, false),
        ];
        for (by, when, settled, want) in table {
            let c = change("a.js", at(when), by);
            assert_eq!(
                covered(&c, settled.map(at)),
                want,
                "{by:?} at {when} settled {settled:?}"
            );
        }
    }

    #[test]
    fn a_window_opens_at_the_tap_and_fires_at_its_end_without_the_hand_over() {
        let t0 = Instant::now();
        let at = |n| ms(t0, n);
        let delay = Duration::from_millis(100);
        let mut w = Window::default();
        w.add(change("a.js", at(0), TAP), delay, at(1));
        assert_eq!(w.deadline(), Some(at(100)));
        assert!(!w.due(at(99)));
        // The debouncer has not handed it over (it may until 140 ms): fire all the same.
        let tap = Some((at(0), Some(at(145))));
        assert_eq!(w.verdict(at(100), delay, tap), Some(Verdict::Fire));
        assert_eq!(w.close(), vec![PathBuf::from("a.js")]);
        assert_eq!(w.deadline(), None);
        // Its copy comes 130 ms after the change: covered, no second window.
        let copy = change("a.js", at(0), By::Debouncer);
        assert!(w.covers(&copy));
        // A later change is not.
        assert!(!w.covers(&change("a.js", at(200), By::Debouncer)));
    }

    #[test]
    fn when_a_due_window_fires() {
        let t0 = Instant::now();
        let at = |n| ms(t0, n);
        let delay = Duration::from_millis(100);
        // (the record overflowed, the tap's newest change and hand-over time, now) -> verdict
        let table = [
            (false, None, 100, Verdict::Fire),
            (false, Some((0, Some(140))), 100, Verdict::Fire),
            // A raw change not taken yet moves the end on.
            (false, Some((30, Some(170))), 100, Verdict::Wait(at(130))),
            // An overflowed record waits for the hand-over, until it is sure.
            (true, Some((0, Some(140))), 100, Verdict::Wait(at(140))),
            (true, Some((0, None)), 100, Verdict::Fire),
            // However long a burst goes on, it fires 2 s after it began.
            (false, Some((1950, None)), 2000, Verdict::Fire),
        ];
        for (missed, tap, now, want) in table {
            let mut w = Window::default();
            w.add(change("a.js", at(0), TAP), delay, at(0));
            if missed {
                w.missed();
            }
            let tap = tap.map(|(t, s): (u64, Option<u64>)| (at(t), s.map(at)));
            assert_eq!(
                w.verdict(at(now), delay, tap),
                Some(want),
                "{missed} {tap:?}"
            );
        }
    }

    #[test]
    fn paths_from_the_tap_and_the_debouncer_count_once_and_temp_files_not_at_all() {
        let t0 = Instant::now();
        let at = |n| ms(t0, n);
        let delay = Duration::from_millis(100);
        let made_and_gone = By::Tap(Fate {
            born: true,
            gone: true,
        });
        let made = By::Tap(Fate {
            born: true,
            gone: false,
        });
        let gone = By::Tap(Fate {
            born: false,
            gone: true,
        });
        let mut w = Window::default();
        for c in [
            change("a.js", at(0), TAP),
            change("tmp", at(1), made_and_gone),
            change("b.js", at(2), made),
            change("a.js", at(0), By::Debouncer),
            change("b.js", at(2), By::Debouncer),
            change("a.js", at(3), TAP),
            // A temp file the debouncer handed over after all (it was made before a tick).
            change("tmp2", at(4), made_and_gone),
            change("tmp2", at(4), By::Debouncer),
            // Made in one record and gone in the next: made and gone.
            change("tmp3", at(5), made),
            change("tmp3", at(6), gone),
        ] {
            w.add(c, delay, at(10));
        }
        assert_eq!(w.deadline(), Some(at(106)));
        let paths: Vec<PathBuf> = ["a.js", "b.js", "tmp2"].iter().map(PathBuf::from).collect();
        assert_eq!(w.close(), paths);
        assert!(w.covers(&change("x", at(6), By::Debouncer)));
    }

    #[test]
    fn watch_delay_0_still_takes_one_write_as_one_change() {
        let t0 = Instant::now();
        let mut w = Window::default();
        w.add(change("a.js", t0, TAP), Duration::ZERO, t0);
        assert_eq!(w.deadline(), Some(t0 + SHORTEST));
    }
}

//! What the tap saw of one app since the event loop last took it: each changed path (the
//! first `KEPT` distinct ones) with the time of its latest raw event and what became of it
//! (made, gone), and how many path events did not fit. Filled on notify's thread, taken by
//! the loop, which opens the app's window with it before the debouncer hands anything over.
//! Also the form in which both sources reach the loop (`Changed`). Pure.

use std::path::{Path, PathBuf};
use std::time::Instant;

use notify_debouncer_full::notify::event::{EventKind, ModifyKind, RenameMode};

/// Distinct paths one record keeps; the loop usually takes a record long before.
pub const KEPT: usize = 100;

/// What a raw event did to one of its paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Made (created, or moved there).
    Arrived,
    /// Removed, or moved away.
    Left,
    /// Written, or its metadata changed.
    Touched,
}

/// What `kind` did to its path number `index` (a paired rename names its source first).
pub fn effect(kind: &EventKind, index: usize) -> Effect {
    match kind {
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            Effect::Arrived
        }
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
            Effect::Left
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if index == 0 => Effect::Left,
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => Effect::Arrived,
        _ => Effect::Touched,
    }
}

/// What became of a path over the raw events seen of it: made by the first, gone after the
/// last. A path made and gone again (a temp file) changed nothing: the debouncer drops it
/// too, and it reloads nothing unless the debouncer hands it over after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fate {
    pub born: bool,
    pub gone: bool,
}

impl Fate {
    pub fn first(effect: Effect) -> Fate {
        Fate {
            born: effect == Effect::Arrived,
            gone: effect == Effect::Left,
        }
    }

    pub fn then(self, effect: Effect) -> Fate {
        Fate {
            born: self.born,
            gone: effect == Effect::Left,
        }
    }

    /// This fate followed by a later one.
    pub fn merge(self, later: Fate) -> Fate {
        Fate {
            born: self.born,
            gone: later.gone,
        }
    }

    pub fn cancelled(self) -> bool {
        self.born && self.gone
    }
}

/// Who saw a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The tap, on a raw event (each raw event once), and what became of the path.
    Tap(Fate),
    /// The debouncer, when it handed the event over (often a copy of what the tap saw).
    Debouncer,
}

/// One changed path of an app, with the time of its (latest) event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub path: PathBuf,
    pub at: Instant,
    pub by: By,
}

/// The tap's record of one app.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Distinct paths, in the order they first came.
    pub paths: Vec<(PathBuf, Instant, Fate)>,
    /// Path events of paths that did not fit.
    pub missed: usize,
}

impl Record {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.missed == 0
    }

    /// `path` had a raw event with `effect` at `at`; whether the record was empty before
    /// (the loop is then to be woken to take it).
    pub fn note(&mut self, path: &Path, effect: Effect, at: Instant) -> bool {
        let was_empty = self.is_empty();
        // The events of one path come together: look from the newest.
        if let Some((_, t, fate)) = self.paths.iter_mut().rev().find(|(p, ..)| p == path) {
            *t = (*t).max(at);
            *fate = fate.then(effect);
        } else if self.paths.len() < KEPT {
            self.paths
                .push((path.to_path_buf(), at, Fate::first(effect)));
        } else {
            self.missed += 1;
        }
        was_empty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify_debouncer_full::notify::event::{CreateKind, DataChange, RemoveKind};
    use std::time::Duration;

    #[test]
    fn each_path_is_kept_once_with_its_latest_time_and_what_became_of_it() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Record::default();
        use Effect::*;
        // (path, effect, ms, whether the record was empty before)
        let steps = [
            ("a.js", Arrived, 0, true),
            ("a.js", Touched, 1, false),
            ("b.js", Touched, 2, false),
            ("tmp", Arrived, 3, false),
            ("a.js", Touched, 4, false),
            ("tmp", Left, 5, false),
            ("c.js", Left, 6, false),
            ("c.js", Arrived, 7, false),
        ];
        for (path, effect, at, empty) in steps {
            assert_eq!(
                r.note(Path::new(path), effect, ms(at)),
                empty,
                "{path} at {at}"
            );
        }
        let fate = |born, gone| Fate { born, gone };
        let want = vec![
            ("a.js".into(), ms(4), fate(true, false)),
            ("b.js".into(), ms(2), fate(false, false)),
            ("tmp".into(), ms(5), fate(true, true)),
            ("c.js".into(), ms(7), fate(false, false)),
        ];
        assert_eq!(r.paths, want);
        assert_eq!(r.missed, 0);
        let cancelled: Vec<bool> = r.paths.iter().map(|(_, _, f)| f.cancelled()).collect();
        assert_eq!(cancelled, [false, false, true, false]);
    }

    #[test]
    fn a_record_keeps_the_first_100_paths_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut r = Record::default();
        for round in 0..2 {
            for i in 0..150 {
                r.note(Path::new(&format!("f{i}")), Effect::Touched, t0);
            }
            assert_eq!(r.paths.len(), KEPT, "round {round}");
        }
        // The kept ones are the first, each once; what did not fit is counted per event.
        assert_eq!(r.paths[99].0, Path::new("f99"));
        assert_eq!(r.missed, 100);
        assert!(!r.note(Path::new("f0"), Effect::Touched, t0));
        assert_eq!(r.missed, 100, "a kept path is no miss");
        assert!(!r.is_empty());
        assert!(Record::default().is_empty());
    }

    #[test]
    fn what_each_event_does_to_its_paths() {
        let name = |m| EventKind::Modify(ModifyKind::Name(m));
        use Effect::*;
        let table = [
            (EventKind::Create(CreateKind::File), 0, Arrived),
            (name(RenameMode::To), 0, Arrived),
            (EventKind::Remove(RemoveKind::Folder), 0, Left),
            (name(RenameMode::From), 0, Left),
            (name(RenameMode::Both), 0, Left),
            (name(RenameMode::Both), 1, Arrived),
            (name(RenameMode::Any), 0, Touched),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Content)),
                0,
                Touched,
            ),
            (EventKind::Any, 0, Touched),
        ];
        for (kind, index, want) in table {
            assert_eq!(effect(&kind, index), want, "{kind:?} path {index}");
        }
    }

    #[test]
    fn a_fate_is_made_by_the_first_event_and_gone_after_the_last() {
        use Effect::*;
        // Events in order -> cancelled (made, then gone).
        let table: [(&[Effect], bool); 6] = [
            (&[Arrived, Touched, Left], true),
            (&[Arrived, Left, Arrived, Left], true),
            (&[Arrived, Left, Arrived], false),
            (&[Touched, Left], false),
            (&[Left, Arrived, Left], false),
            (&[Arrived, Touched], false),
        ];
        for (events, want) in table {
            let fate = events[1..]
                .iter()
                .fold(Fate::first(events[0]), |f, e| f.then(*e));
            assert_eq!(fate.cancelled(), want, "{events:?}");
            // Split across two records and merged: the same.
            for cut in 1..events.len() {
                let a = events[1..cut]
                    .iter()
                    .fold(Fate::first(events[0]), |f, e| f.then(*e));
                let b = events[cut + 1..]
                    .iter()
                    .fold(Fate::first(events[cut]), |f, e| f.then(*e));
                assert_eq!(a.merge(b), fate, "{events:?} cut at {cut}");
            }
        }
    }
}

//! The loop guard: paths that an app's own starts change (a `started.txt`, a pid file, a
//! cache written at boot) must not reload it, or every reload causes the next. A path is
//! an echo once it has changed during two of the app's start windows (from a spawn until the
//! app is ready again) and never outside one; an echo reloads nothing,
//! and hotrun says so once per path. A path the user edits outside a start is never
//! taken for an echo. Changes are placed by the time they happened (as the watcher's
//! thread saw them), not the time they reach the loop: the debouncer's copy of a change
//! comes later, often after the window closed.
//! Pure: the event loop says when windows open and close and what it saw when.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many start windows a path must change in (and never outside) to be an echo.
const WINDOWS: u32 = 2;
/// Closed windows remembered, for changes that arrive after their window closed.
const RECENT: usize = 4;
/// How long after a start that ends at readiness (a first start, a restart: no old
/// instance drains after it) its window is closed: under load notify's thread stamps a
/// raw event tens of ms after the write (20-40+ ms seen), so a file an app writes just
/// before it is ready would otherwise count as the user's edit. A reload's window closes
/// once its old instances are gone, well after its new ones were ready: no grace there, so
/// an edit right after a reload is the user's.
pub const LATE_STAMP: Duration = Duration::from_millis(150);

/// One start window: its number, when it opened, when it closed (if it did).
#[derive(Debug, Clone, Copy)]
struct Window {
    id: u64,
    opened: Instant,
    closed: Option<Instant>,
}

impl Window {
    fn holds(&self, at: Instant) -> bool {
        self.opened <= at && self.closed.is_none_or(|c| at <= c)
    }
}

#[derive(Debug, Default)]
pub struct EchoGuard {
    /// The open window (last) and the recently closed ones, oldest first.
    windows: VecDeque<Window>,
    next_id: u64,
    /// For each path: the last window it was counted in, and in how many windows it changed.
    counted: HashMap<PathBuf, (u64, u32)>,
    /// Paths that changed outside any start window: the user's.
    outside: HashSet<PathBuf>,
    /// Echoes already said.
    said: HashSet<PathBuf>,
}

/// A batch of changes sorted at the end of its debounce window.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sorted {
    /// The changes that reload.
    pub reload: Vec<PathBuf>,
    /// Echoes not said before.
    pub new_echoes: Vec<PathBuf>,
}

impl EchoGuard {
    fn is_open(&self) -> bool {
        self.windows.back().is_some_and(|w| w.closed.is_none())
    }

    /// A start window opens at `at` (nothing when one is open).
    pub fn opened(&mut self, at: Instant) {
        if self.is_open() {
            return;
        }
        self.next_id += 1;
        self.windows.push_back(Window {
            id: self.next_id,
            opened: at,
            closed: None,
        });
        while self.windows.len() > RECENT + 1 {
            self.windows.pop_front();
        }
    }

    /// The open start window closes at `at` (the app is ready and settled).
    pub fn closed(&mut self, at: Instant) {
        if let Some(w) = self.windows.back_mut().filter(|w| w.closed.is_none()) {
            w.closed = Some(at);
        }
    }

    /// `path` changed at `at`.
    pub fn seen(&mut self, path: &Path, at: Instant) {
        let window = self
            .windows
            .iter()
            .rev()
            .find(|w| w.holds(at))
            .map(|w| w.id);
        match window {
            None => {
                self.outside.insert(path.to_path_buf());
            }
            Some(id) => {
                let entry = self.counted.entry(path.to_path_buf()).or_insert((0, 0));
                if entry.0 != id {
                    *entry = (id, entry.1 + 1);
                }
            }
        }
    }

    fn is_echo(&self, path: &PathBuf) -> bool {
        !self.outside.contains(path) && self.counted.get(path).is_some_and(|&(_, n)| n >= WINDOWS)
    }

    /// Splits a batch into the changes that reload and the echoes.
    pub fn sort(&mut self, batch: Vec<PathBuf>) -> Sorted {
        let mut sorted = Sorted::default();
        for path in batch {
            if !self.is_echo(&path) {
                sorted.reload.push(path);
            } else if self.said.insert(path.clone()) {
                sorted.new_echoes.push(path);
            }
        }
        sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    enum Step {
        /// A change: path, at this many ms.
        Seen(&'static str, u64),
        /// A start window opens / closes at this many ms.
        Open(u64),
        Close(u64),
        /// The batch's paths, what reloads, what is said.
        Sort(Vec<&'static str>, Vec<&'static str>, Vec<&'static str>),
    }
    use Step::*;

    fn run(steps: Vec<Step>) {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut g = EchoGuard::default();
        let paths = |v: Vec<&str>| v.into_iter().map(PathBuf::from).collect::<Vec<_>>();
        for (n, step) in steps.into_iter().enumerate() {
            match step {
                Seen(p, at) => g.seen(Path::new(p), ms(at)),
                Open(at) => g.opened(ms(at)),
                Close(at) => g.closed(ms(at)),
                Sort(batch, reload, said) => {
                    let got = g.sort(paths(batch));
                    let want = Sorted {
                        reload: paths(reload),
                        new_echoes: paths(said),
                    };
                    assert_eq!(got, want, "step {n}");
                }
            }
        }
    }

    #[test]
    fn a_file_written_at_each_start_reloads_once_then_is_an_echo() {
        run(vec![
            // The first start writes it: one reload (it could be the user's).
            Open(0),
            Seen("started.txt", 10),
            Close(20),
            Sort(vec!["started.txt"], vec!["started.txt"], vec![]),
            // That reload's start writes it again (twice): an echo, said once.
            Open(100),
            Seen("started.txt", 110),
            Seen("started.txt", 120),
            Close(130),
            Sort(vec!["started.txt"], vec![], vec!["started.txt"]),
            // The user edits the app: it reloads; its start's echo is dropped silently.
            Seen("server.js", 200),
            Sort(vec!["server.js"], vec!["server.js"], vec![]),
            Open(300),
            Seen("started.txt", 310),
            Close(320),
            Sort(vec!["started.txt"], vec![], vec![]),
        ]);
    }

    #[test]
    fn a_change_is_placed_by_when_it_happened_not_when_it_arrived() {
        run(vec![
            // Each start's write reaches the guard after its window closed, even after the
            // next one opened: it still counts for the window it happened in.
            Open(0),
            Close(20),
            Seen("started.txt", 10),
            Open(400),
            Seen("started.txt", 15),
            Close(420),
            Seen("started.txt", 410),
            Sort(vec!["started.txt"], vec![], vec!["started.txt"]),
            // Between windows: the user's.
            Seen("lib.js", 300),
            Seen("lib.js", 405),
            Seen("lib.js", 415),
            Sort(vec!["lib.js"], vec!["lib.js"], vec![]),
        ]);
    }

    #[test]
    fn a_window_closed_late_holds_the_changes_stamped_late() {
        // A first start is ready at 100 and its window closed at 100 + LATE_STAMP: the
        // app's write, stamped at 180, is the start's; a change after that, the user's.
        let late = LATE_STAMP.as_millis() as u64;
        run(vec![
            Open(0),
            Close(100 + late),
            Seen("started.txt", 180),
            Open(1000),
            Close(1100 + late),
            Seen("started.txt", 1240),
            Sort(vec!["started.txt"], vec![], vec!["started.txt"]),
            Seen("app.js", 1100 + late + 1),
            Sort(vec!["app.js"], vec!["app.js"], vec![]),
        ]);
    }

    #[test]
    fn a_file_the_user_edits_is_never_an_echo() {
        run(vec![
            // Saved once outside a start, then again during two reloads in a row.
            Seen("app.js", 0),
            Sort(vec!["app.js"], vec!["app.js"], vec![]),
            Open(10),
            Seen("app.js", 11),
            Close(12),
            Sort(vec!["app.js"], vec!["app.js"], vec![]),
            Open(20),
            Seen("app.js", 21),
            Close(22),
            Sort(vec!["app.js"], vec!["app.js"], vec![]),
        ]);
    }

    #[test]
    fn a_batch_with_an_echo_and_a_real_change_reloads_for_the_change() {
        run(vec![
            Open(0),
            Seen("pid.txt", 1),
            Close(2),
            Open(10),
            Seen("pid.txt", 11),
            Seen("lib.js", 11),
            Sort(vec!["pid.txt", "lib.js"], vec!["lib.js"], vec!["pid.txt"]),
        ]);
    }

    #[test]
    fn only_the_recent_windows_are_remembered() {
        let t0 = Instant::now();
        let mut g = EchoGuard::default();
        for n in 0..10u64 {
            g.opened(t0 + Duration::from_millis(n * 10));
            g.opened(t0 + Duration::from_millis(n * 10 + 1));
            g.closed(t0 + Duration::from_millis(n * 10 + 5));
        }
        assert_eq!(g.windows.len(), RECENT + 1);
        // A change from a forgotten window counts as outside one.
        g.seen(Path::new("x"), t0 + Duration::from_millis(2));
        assert!(g.outside.contains(Path::new("x")));
    }
}

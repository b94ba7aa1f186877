//! The loop guard: paths that an app's own starts change (a `started.txt`, a pid file, a
//! cache written at boot) must not reload it, or every reload causes the next. A path is
//! an echo once it has changed during two of the app's start windows (from a spawn until the
//! app is ready again) and never outside one; an echo reloads nothing,
//! and hotrun says so once per path. A path the user edits outside a start is never
//! taken for an echo. Pure: the event loop says when windows close and what it saw.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How many start windows a path must change in (and never outside) to be an echo.
const WINDOWS: u32 = 2;

#[derive(Debug, Default)]
pub struct EchoGuard {
    /// In how many start windows each path changed.
    windows: HashMap<PathBuf, u32>,
    /// The paths counted in the current window.
    this_window: HashSet<PathBuf>,
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
    /// `path` changed; `starting`: during one of the app's start windows.
    pub fn seen(&mut self, path: &Path, starting: bool) {
        if !starting {
            self.outside.insert(path.to_path_buf());
        } else if self.this_window.insert(path.to_path_buf()) {
            *self.windows.entry(path.to_path_buf()).or_default() += 1;
        }
    }

    /// The app's start window closed (it is ready and settled).
    pub fn window_closed(&mut self) {
        self.this_window.clear();
    }

    fn is_echo(&self, path: &PathBuf) -> bool {
        !self.outside.contains(path) && self.windows.get(path).is_some_and(|&n| n >= WINDOWS)
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

    enum Step {
        /// A change: path, during a start window.
        Seen(&'static str, bool),
        Closed,
        /// The batch's paths, what reloads, what is said.
        Sort(Vec<&'static str>, Vec<&'static str>, Vec<&'static str>),
    }
    use Step::*;

    fn run(steps: Vec<Step>) {
        let mut g = EchoGuard::default();
        let paths = |v: Vec<&str>| v.into_iter().map(PathBuf::from).collect::<Vec<_>>();
        for (n, step) in steps.into_iter().enumerate() {
            match step {
                Seen(p, starting) => g.seen(Path::new(p), starting),
                Closed => g.window_closed(),
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
            Seen("started.txt", true),
            Closed,
            Sort(vec!["started.txt"], vec!["started.txt"], vec![]),
            // That reload's start writes it again: an echo, said once.
            Seen("started.txt", true),
            Seen("started.txt", true),
            Closed,
            Sort(vec!["started.txt"], vec![], vec!["started.txt"]),
            // The user edits the app: it reloads; its start's echo is dropped silently.
            Seen("server.js", false),
            Sort(vec!["server.js"], vec!["server.js"], vec![]),
            Seen("started.txt", true),
            Closed,
            Sort(vec!["started.txt"], vec![], vec![]),
        ]);
    }

    #[test]
    fn a_file_the_user_edits_is_never_an_echo() {
        run(vec![
            // Saved once outside a start, then again during two reloads in a row.
            Seen("app.js", false),
            Sort(vec!["app.js"], vec!["app.js"], vec![]),
            Seen("app.js", true),
            Closed,
            Sort(vec!["app.js"], vec!["app.js"], vec![]),
            Seen("app.js", true),
            Closed,
            Sort(vec!["app.js"], vec!["app.js"], vec![]),
        ]);
    }

    #[test]
    fn a_batch_with_an_echo_and_a_real_change_reloads_for_the_change() {
        run(vec![
            Seen("pid.txt", true),
            Closed,
            Seen("pid.txt", true),
            Closed,
            Seen("lib.js", true),
            Sort(vec!["pid.txt", "lib.js"], vec!["lib.js"], vec!["pid.txt"]),
        ]);
    }
}

//! File watching: one watcher for all apps, one watch per kept folder.
//!
//! notify's recursive mode cannot skip ignored folders (notify #204), and a Next.js
//! checkout holds tens of thousands of folders in node_modules, each an inotify watch. So
//! hotrun walks each app's watch roots itself (walk.rs: a whole ignored subtree is cut
//! off), watches each kept folder non-recursively, watches folders created later, forgets
//! removed ones, and walks everything again when the kernel's queue overflowed. Running out
//! of watches is an error that names the limit.
//!
//! The parent of each root is watched too, for the root's return: `rm -rf dist && mkdir
//! dist`, or an editor's atomic save of a root that is a file (a rename over it), is seen,
//! walked again and counted as one change. Symbolic links are followed as PM2 does: a link
//! to a file is watched itself, a link to a folder outside the tree is walked through it,
//! up to `LINKED_FOLDERS` folders; a link back into the tree (`ln -s . self`) or above it
//! is a loop and adds nothing; one folder reached by two paths is watched once.
//!
//! Events come through notify-debouncer-full (front.rs), with a tap on the raw events that
//! records each app's changed paths at once (record.rs); `collect` sorts both into changed
//! paths per app, with the time each happened and who saw it, and the event loop debounces
//! those (a trailing `watch_delay` window, so a burst is one reload).

pub mod echo;
mod front;
pub mod ignore;
mod record;
mod scope;
mod walk;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::{
    self,
    event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode},
};
use tokio::sync::Notify;

use self::front::{Front, Queue, Shared, Tap};
pub use self::ignore::IgnoreSet;
pub use self::record::{By, Changed, Fate};
pub use self::scope::AppWatch;
use self::scope::Scope;
use self::walk::Link;

/// Folders followed through symbolic links out of one walk's tree, at most (a link to
/// /usr or to / must not cost the machine its watches).
const LINKED_FOLDERS: usize = 1_000;

/// Why watching could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(
        "cannot watch {path}: the system's limit of inotify watches is reached \
         (fs.inotify.max_user_watches = {limit}; hotrun holds {held}). Raise it, e.g. \
         `sysctl fs.inotify.max_user_watches=524288` (see inotify(7)), or add big folders \
         to ignore_watch"
    )]
    TooManyWatches {
        path: String,
        limit: String,
        held: usize,
    },
    #[error(
        "cannot watch {path}: too many inotify instances or open files ({detail}). Raise \
         fs.inotify.max_user_instances or the open-files limit (ulimit -n)"
    )]
    TooManyHandles { path: String, detail: String },
    #[error("cannot watch {path}: {detail}")]
    Other { path: String, detail: String },
}

/// The watcher of every app, and what it watches.
pub struct Watcher {
    front: Front,
    scope: Arc<Scope>,
    tap: Arc<Tap>,
    /// Every watched path, with the (device, inode) it had when its watch was placed.
    watched: HashMap<PathBuf, (u64, u64)>,
    /// The same by inode: a folder reached by two paths (a link) is watched once.
    inodes: HashMap<(u64, u64), PathBuf>,
    queue: Shared,
    /// The debouncer's hold: a change reaches `collect` within two holds.
    hold: Duration,
    /// The time of the newest change handed over, per app (index in the scope).
    delivered: Vec<Option<Instant>>,
    /// Links already said to be too big to follow.
    said: HashSet<PathBuf>,
    notes: Vec<String>,
}

/// The changes of one app in one pass.
#[derive(Debug)]
pub struct AppChanges {
    /// The app's index in the plan.
    pub app: usize,
    /// What the tap recorded (first), then what the debouncer handed over: one path may
    /// come from both, and from the debouncer more than once.
    pub paths: Vec<Changed>,
    /// The tap's record overflowed: some paths come with the debouncer only.
    pub missed: bool,
}

/// What `collect` found.
#[derive(Debug, Default)]
pub struct Collected {
    pub changes: Vec<AppChanges>,
    /// The ecosystem file changed.
    pub config_changed: bool,
    pub errors: Vec<WatchError>,
    /// What the user should know (a link not followed).
    pub notes: Vec<String>,
}

impl Collected {
    fn of(&mut self, app: usize) -> &mut AppChanges {
        match self.changes.iter().position(|c| c.app == app) {
            Some(i) => &mut self.changes[i],
            None => {
                self.changes.push(AppChanges {
                    app,
                    paths: Vec::new(),
                    missed: false,
                });
                self.changes.last_mut().expect("pushed")
            }
        }
    }

    fn note(&mut self, app: usize, path: &Path, at: Instant, by: By) {
        self.of(app).paths.push(Changed {
            path: path.to_path_buf(),
            at,
            by,
        });
    }
}

fn classify(path: &Path, err: notify::Error, held: usize) -> WatchError {
    let path = path.display().to_string();
    let errno = match &err.kind {
        notify::ErrorKind::Io(io) => io.raw_os_error(),
        _ => None,
    };
    match (&err.kind, errno) {
        (notify::ErrorKind::MaxFilesWatch, _) | (_, Some(28)) => WatchError::TooManyWatches {
            path,
            limit: std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            held,
        },
        (_, Some(24)) => WatchError::TooManyHandles {
            path,
            detail: err.to_string(),
        },
        _ => WatchError::Other {
            path,
            detail: err.to_string(),
        },
    }
}

/// Whether an event says something changed (opening or reading a file does not).
pub(super) fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl Watcher {
    /// Starts watching every app's roots. `poll` switches to polling at that interval
    /// (for filesystems without native events); `shortest_delay` is the shortest
    /// `watch_delay` of the apps (the debouncer holds events half of it).
    /// `config`, when given, is the ecosystem file: its changes are reported apart
    /// (`hotrun watch` reloads every app then). `wake` is notified when events wait (a
    /// raw change recorded, a batch handed over).
    pub fn start(
        apps: Vec<AppWatch>,
        config: Option<PathBuf>,
        poll: Option<Duration>,
        shortest_delay: Duration,
        wake: Arc<Notify>,
    ) -> Result<Watcher, WatchError> {
        let queue: Shared = Arc::new(Mutex::new(Queue::default()));
        let scope = Arc::new(Scope::new(apps, config));
        let tap = Arc::new(Tap::new(scope.clone(), wake.clone()));
        let hold = front::hold_for(shortest_delay);
        let front = Front::start(hold, poll, tap.clone(), queue.clone(), wake)
            .map_err(|e| classify(Path::new("."), e, 0))?;
        let delivered = vec![None; scope.apps.len()];
        let mut watcher = Watcher {
            front,
            scope,
            tap,
            watched: HashMap::new(),
            inodes: HashMap::new(),
            queue,
            hold,
            delivered,
            said: HashSet::new(),
            notes: Vec::new(),
        };
        watcher.place_everything()?;
        Ok(watcher)
    }

    /// Every app's roots, their parents, the ecosystem file's folder.
    fn place_everything(&mut self) -> Result<(), WatchError> {
        for i in 0..self.scope.apps.len() {
            for root in self.scope.apps[i].roots.clone() {
                self.walk(i, &root, &root)?;
                if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    self.add(parent)?;
                }
            }
        }
        if let Some(folder) = self.scope.config.clone().as_deref().and_then(Path::parent) {
            self.add(folder)?;
        }
        Ok(())
    }

    /// The ecosystem file, when its changes are reported.
    pub fn config_file(&self) -> Option<&Path> {
        self.scope.config.as_deref()
    }

    /// When app `app` (its index in the plan) last changed as the backend saw it, and
    /// whether the debouncer may still hand that change over at `now`: then the earliest
    /// time the loop can be sure it will not.
    pub fn last_change(&self, app: usize, now: Instant) -> Option<(Instant, Option<Instant>)> {
        let i = self.scope.apps.iter().position(|a| a.app == app)?;
        let last = self.tap.last_change(i)?;
        let handed_over = self.delivered[i].is_some_and(|d| d >= last);
        let sure_at = last + self.hold * 2 + Duration::from_millis(5);
        Some((last, (!handed_over && now < sure_at).then_some(sure_at)))
    }

    /// How many folders and files are watched.
    pub fn watch_count(&self) -> usize {
        self.watched.len()
    }

    /// What the user should know from setting up (links not followed).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Watches `start` and every kept folder below it, for app `i` whose root is `root`.
    fn walk(&mut self, i: usize, root: &Path, start: &Path) -> Result<(), WatchError> {
        let mut budget = LINKED_FOLDERS;
        let found = walk::scan(start, root, &self.scope.apps[i].ignore, usize::MAX);
        self.place(i, root, found, &mut budget)
    }

    fn place(
        &mut self,
        i: usize,
        root: &Path,
        found: walk::Found,
        budget: &mut usize,
    ) -> Result<(), WatchError> {
        for place in &found.places {
            // A root that is a plain file is seen through its folder's watch, which also
            // sees it replaced (an editor's atomic save).
            if std::fs::symlink_metadata(place).is_ok_and(|m| m.is_file()) {
                continue;
            }
            self.add(place)?;
        }
        for link in &found.links {
            self.follow(i, root, link, budget)?;
        }
        Ok(())
    }

    /// Follows a symbolic link found under `root`, if it leads somewhere new.
    fn follow(
        &mut self,
        i: usize,
        root: &Path,
        link: &Path,
        budget: &mut usize,
    ) -> Result<(), WatchError> {
        let root_real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        match walk::classify(link, root, &root_real, &self.scope.apps[i].ignore) {
            Link::Dangling | Link::Loop | Link::Walked => Ok(()),
            Link::File => self.add(link),
            Link::Follow(target) => {
                let known = std::fs::metadata(link)
                    .is_ok_and(|m| self.inodes.contains_key(&(m.dev(), m.ino())));
                if known {
                    return Ok(());
                }
                let found = walk::scan(link, root, &self.scope.apps[i].ignore, *budget);
                if found.over {
                    if self.said.insert(link.to_path_buf()) {
                        self.notes.push(format!(
                            "{} leads to {}, more than the {LINKED_FOLDERS} folders hotrun \
                             follows through links: not watched (name it in watch to watch \
                             it all, or add it to ignore_watch)",
                            link.display(),
                            target.display()
                        ));
                    }
                    return Ok(());
                }
                *budget -= found.places.len();
                self.place(i, root, found, budget)
            }
        }
    }

    fn add(&mut self, path: &Path) -> Result<(), WatchError> {
        if self.watched.contains_key(path) {
            return Ok(());
        }
        // Gone between the walk and the watch: nothing to watch.
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(());
        };
        let id = (meta.dev(), meta.ino());
        if self.inodes.contains_key(&id) {
            return Ok(());
        }
        match self.front.watch(path) {
            Ok(()) => {
                self.watched.insert(path.to_path_buf(), id);
                self.inodes.insert(id, path.to_path_buf());
                Ok(())
            }
            Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => Ok(()),
            Err(e) => Err(classify(path, e, self.watched.len())),
        }
    }

    /// Forgets `path` and every watch below it (it was removed or renamed away).
    fn forget(&mut self, path: &Path) {
        let gone: Vec<PathBuf> = self
            .watched
            .keys()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect();
        for p in gone {
            if let Some(id) = self.watched.remove(&p) {
                self.inodes.remove(&id);
            }
            self.front.unwatch(&p);
        }
    }

    /// Forgets watches whose path is gone or now names another file (events were lost).
    fn prune(&mut self) {
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(p, id)| std::fs::metadata(p).map_or(true, |m| (m.dev(), m.ino()) != **id))
            .map(|(p, _)| p.clone())
            .collect();
        for p in stale {
            self.forget(&p);
        }
    }

    /// `path` appeared (created, or renamed into place): watch what is new there. A folder
    /// (or a root that came back) is walked; a new link is followed within bounds.
    fn appeared(&mut self, path: &Path, errors: &mut Vec<WatchError>) {
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
        let owners: Vec<(usize, PathBuf)> = self
            .scope
            .owners(path)
            .map(|(i, r)| (i, r.to_path_buf()))
            .collect();
        for (i, root) in owners {
            let mut budget = LINKED_FOLDERS;
            let placed = if is_link && path != root {
                self.follow(i, &root, path, &mut budget)
            } else if path.is_dir() || path == root {
                self.walk(i, &root, path)
            } else {
                Ok(())
            };
            if let Err(e) = placed {
                errors.push(e);
            }
        }
    }

    /// Takes the tap's records and the queued events and sorts them into changed paths per
    /// app; watches what appeared and forgets what went. Errors (running out of watches
    /// for a new folder) are returned beside the changes.
    pub fn collect(&mut self) -> Collected {
        // Before the records are taken: a raw change noted after is later than a rescan.
        let now = Instant::now();
        let mut found = Collected::default();
        for (i, app) in self.scope.apps.iter().enumerate() {
            let record = self.tap.take(i);
            if record.is_empty() {
                continue;
            }
            let entry = found.of(app.app);
            entry.missed = record.missed > 0;
            entry
                .paths
                .extend(record.paths.into_iter().map(|(path, at, fate)| Changed {
                    path,
                    at,
                    by: By::Tap(fate),
                }));
        }
        let Queue { events, overflow } =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        if overflow || events.iter().any(|e| e.need_rescan()) {
            // The kernel dropped events: walk everything again and call it a change.
            self.prune();
            if let Err(e) = self.place_everything() {
                found.errors.push(e);
            }
            for app in &self.scope.apps {
                for root in &app.roots {
                    found.note(app.app, root, now, By::Debouncer);
                }
            }
        }
        for event in &events {
            if !is_change(&event.kind) || event.paths.is_empty() {
                continue;
            }
            let (gone, came): (&[PathBuf], &[PathBuf]) = match event.kind {
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                    (&event.paths, &[])
                }
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.split_at(1),
                EventKind::Modify(ModifyKind::Name(RenameMode::Any))
                    if !event.paths[0].exists() =>
                {
                    (&event.paths, &[])
                }
                EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    (&[], &event.paths)
                }
                _ => (&[], &[]),
            };
            for path in gone {
                self.forget(path);
            }
            for path in came {
                self.appeared(path, &mut found.errors);
            }
            for path in &event.paths {
                if self.scope.is_config(path) {
                    found.config_changed = true;
                    continue;
                }
                if self.scope.is_own(path) {
                    continue;
                }
                for (i, _) in self.scope.owners(path) {
                    found.note(self.scope.apps[i].app, path, event.time, By::Debouncer);
                    self.delivered[i] = self.delivered[i].max(Some(event.time));
                }
            }
        }
        found.notes = self.take_notes();
        found
    }
}

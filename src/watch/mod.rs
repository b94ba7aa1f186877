//! File watching: one notify watcher for all apps, one watch per kept folder.
//!
//! notify's recursive mode cannot skip ignored folders (notify #204), and a Next.js
//! checkout holds tens of thousands of folders in node_modules, each an inotify watch. So
//! hotrun walks each app's watch roots itself (`ignore::WalkBuilder` with `filter_entry`,
//! which cuts off a whole ignored subtree), watches each kept folder non-recursively,
//! watches folders created later, forgets removed ones, and walks everything again when
//! the kernel's queue overflowed. Running out of watches is an error that names the limit.
//!
//! notify's thread only queues raw events and wakes the event loop; the loop sorts them
//! into per-app changes and debounces them itself (a trailing `watch_delay` window, so a
//! burst is one reload and no thread polls while nothing happens).

pub mod echo;
pub mod ignore;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{Event, RecursiveMode, Watcher as _};
use tokio::sync::Notify;

pub use self::ignore::IgnoreSet;

/// Raw events kept between two passes of the event loop, at most.
const MAX_QUEUED: usize = 50_000;

/// What one app watches.
pub struct AppWatch {
    pub app: usize,
    pub roots: Vec<PathBuf>,
    pub ignore: IgnoreSet,
}

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

/// What notify's thread hands to the event loop.
#[derive(Default)]
struct Queue {
    events: Vec<Event>,
    overflow: bool,
}

/// The watcher of every app, and the folders it watches.
pub struct Watcher {
    inner: Box<dyn notify::Watcher + Send>,
    apps: Vec<AppWatch>,
    watched: HashSet<PathBuf>,
    queue: Arc<Mutex<Queue>>,
    config: Option<PathBuf>,
    /// hotrun's own stdout and stderr when they are files (device, inode): what hotrun
    /// writes there (`hotrun > hotrun.log`, `nohup`'s nohup.out) is no change of an app.
    own: Vec<(u64, u64)>,
}

/// The (device, inode) of hotrun's stdout and stderr, those that are regular files.
fn own_output_files() -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut own = Vec::new();
    for fd in ["/proc/self/fd/1", "/proc/self/fd/2"] {
        if let Ok(meta) = std::fs::metadata(fd) {
            if meta.is_file() && !own.contains(&(meta.dev(), meta.ino())) {
                own.push((meta.dev(), meta.ino()));
            }
        }
    }
    own
}

/// What `collect` found.
#[derive(Debug, Default)]
pub struct Collected {
    /// Changed paths of each app (by its index in the plan).
    pub changes: Vec<(usize, Vec<PathBuf>)>,
    /// The ecosystem file changed.
    pub config_changed: bool,
    pub errors: Vec<WatchError>,
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
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl Watcher {
    /// Starts watching every app's roots. `poll` switches to polling at that interval
    /// (for filesystems without native events).
    /// `config`, when given, is the ecosystem file: its changes are reported apart
    /// (`hotrun watch` reloads every app then). `wake` is notified when events wait.
    pub fn start(
        apps: Vec<AppWatch>,
        config: Option<PathBuf>,
        poll: Option<Duration>,
        wake: Arc<Notify>,
    ) -> Result<Watcher, WatchError> {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let (q, w) = (queue.clone(), wake);
        let handler = move |res: notify::Result<Event>| {
            let mut queue = q.lock().unwrap_or_else(|e| e.into_inner());
            match res {
                Ok(ev) if queue.events.len() < MAX_QUEUED => queue.events.push(ev),
                // Too many, or an error of the backend: look at everything again.
                _ => queue.overflow = true,
            }
            drop(queue);
            w.notify_one();
        };
        let settings = notify::Config::default();
        let inner: Box<dyn notify::Watcher + Send> = match poll {
            Some(interval) => Box::new(
                notify::PollWatcher::new(handler, settings.with_poll_interval(interval))
                    .map_err(|e| classify(Path::new("."), e, 0))?,
            ),
            None => Box::new(
                notify::RecommendedWatcher::new(handler, settings)
                    .map_err(|e| classify(Path::new("."), e, 0))?,
            ),
        };
        let mut watcher = Watcher {
            inner,
            apps,
            watched: HashSet::new(),
            queue,
            config: config.clone(),
            own: own_output_files(),
        };
        for i in 0..watcher.apps.len() {
            for root in watcher.apps[i].roots.clone() {
                watcher.walk(i, &root, &root)?;
            }
        }
        if let Some(folder) = config.as_deref().and_then(Path::parent) {
            watcher.add(folder)?;
        }
        Ok(watcher)
    }

    /// The ecosystem file, when its changes are reported.
    pub fn config_file(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// How many folders and files are watched.
    pub fn watch_count(&self) -> usize {
        self.watched.len()
    }

    /// Watches `start` and every kept folder below it, for app `i` whose root is `root`.
    fn walk(&mut self, i: usize, root: &Path, start: &Path) -> Result<(), WatchError> {
        let ignore = self.apps[i].ignore.clone();
        let root_owned = root.to_path_buf();
        let walker = ::ignore::WalkBuilder::new(start)
            .standard_filters(false)
            .hidden(false)
            .follow_links(false)
            .filter_entry(move |e| !ignore.ignored(&root_owned, e.path()))
            .build();
        for entry in walker.flatten() {
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            // Folders, and a root that is a file (`watch: ['server.js']`).
            if is_dir || entry.path() == root {
                self.add(entry.path())?;
            }
        }
        Ok(())
    }

    fn add(&mut self, path: &Path) -> Result<(), WatchError> {
        if self.watched.contains(path) {
            return Ok(());
        }
        match self.inner.watch(path, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.watched.insert(path.to_path_buf());
                Ok(())
            }
            // Gone between the walk and the watch: nothing to watch.
            Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => Ok(()),
            Err(e) => Err(classify(path, e, self.watched.len())),
        }
    }

    /// Whether `path` is one of hotrun's own output files, by any name.
    fn is_own(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        !self.own.is_empty()
            && std::fs::metadata(path).is_ok_and(|m| self.own.contains(&(m.dev(), m.ino())))
    }

    /// Takes the queued events and sorts them into changed paths per app; watches
    /// folders that appeared and forgets removed ones. Errors (running out of watches
    /// for a new folder) are returned beside the changes.
    pub fn collect(&mut self) -> Collected {
        let Queue { events, overflow } =
            std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let mut changes: Vec<(usize, Vec<PathBuf>)> = Vec::new();
        let mut errors = Vec::new();
        let mut config_changed = false;
        let mut note = |app: usize, path: &Path| match changes.iter_mut().find(|(a, _)| *a == app) {
            Some((_, paths)) => {
                if !paths.iter().any(|p| p == path) {
                    paths.push(path.to_path_buf());
                }
            }
            None => changes.push((app, vec![path.to_path_buf()])),
        };

        if overflow || events.iter().any(|e| e.need_rescan()) {
            // The kernel dropped events: walk everything again and call it a change.
            for i in 0..self.apps.len() {
                for root in self.apps[i].roots.clone() {
                    if let Err(e) = self.walk(i, &root, &root) {
                        errors.push(e);
                    }
                    note(self.apps[i].app, &root);
                }
            }
        }
        for event in &events {
            if !is_change(&event.kind) {
                continue;
            }
            let appeared = matches!(
                event.kind,
                EventKind::Create(CreateKind::Folder | CreateKind::Any)
                    | EventKind::Modify(ModifyKind::Name(
                        RenameMode::To | RenameMode::Both | RenameMode::Any
                    ))
            );
            for path in &event.paths {
                if matches!(event.kind, EventKind::Remove(_)) && self.watched.remove(path) {
                    let _ = self.inner.unwatch(path);
                }
                if self.config.as_deref() == Some(path.as_path()) {
                    config_changed = true;
                    continue;
                }
                if self.is_own(path) {
                    continue;
                }
                for i in 0..self.apps.len() {
                    let Some(root) = self.apps[i]
                        .roots
                        .iter()
                        .find(|r| path.starts_with(r))
                        .cloned()
                    else {
                        continue;
                    };
                    if self.apps[i].ignore.ignored(&root, path) {
                        continue;
                    }
                    note(self.apps[i].app, path);
                    if appeared && path.is_dir() {
                        // Files may have been written in it before its watch existed: the
                        // folder itself counts as the change.
                        if let Err(e) = self.walk(i, &root, path) {
                            errors.push(e);
                        }
                    }
                }
            }
        }
        Collected {
            changes,
            config_changed,
            errors,
        }
    }
}

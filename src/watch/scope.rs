//! What the watcher watches for: each app's roots and ignore rules, the ecosystem file,
//! hotrun's own output files. Shared (read-only) by the event loop, which sorts changes
//! into apps, and by the watcher's raw-event tap, which notes when each app last changed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::IgnoreSet;

/// What one app watches.
pub struct AppWatch {
    /// The app's index in the plan.
    pub app: usize,
    pub roots: Vec<PathBuf>,
    pub ignore: IgnoreSet,
}

pub(super) struct Scope {
    pub apps: Vec<AppWatch>,
    /// The ecosystem file, when its changes are reported (`hotrun watch`).
    pub config: Option<PathBuf>,
    /// hotrun's own stdout and stderr when they are files (device, inode): what hotrun
    /// writes there (`hotrun > hotrun.log`, `nohup`'s nohup.out) is no change of an app.
    own: Vec<(u64, u64)>,
}

/// The (device, inode) of hotrun's stdout and stderr, those that are regular files.
fn own_output_files() -> Vec<(u64, u64)> {
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

impl Scope {
    pub fn new(apps: Vec<AppWatch>, config: Option<PathBuf>) -> Scope {
        Scope {
            apps,
            config,
            own: own_output_files(),
        }
    }

    pub fn is_config(&self, path: &Path) -> bool {
        self.config.as_deref() == Some(path)
    }

    /// Whether `path` is one of hotrun's own output files, by any name.
    pub fn is_own(&self, path: &Path) -> bool {
        !self.own.is_empty()
            && std::fs::metadata(path).is_ok_and(|m| self.own.contains(&(m.dev(), m.ino())))
    }

    /// The apps (their index here, and the root it lies in) that `path` is a change of.
    pub fn owners<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = (usize, &'a Path)> + 'a {
        self.apps.iter().enumerate().filter_map(move |(i, app)| {
            let root = app.roots.iter().find(|r| path.starts_with(r))?;
            (!app.ignore.ignored(root, path)).then_some((i, root.as_path()))
        })
    }
}

//! Which paths an app's watcher ignores. Pure; tested by tables.
//!
//! hotrun's defaults always apply (PM2 drops its defaults as soon as `ignore_watch` is set,
//! so adding 'logs' starts watching node_modules: PM2 issues #3318, #5061):
//! `node_modules` at any depth, dot-files and dot-directories (.git, .next, ...), editors'
//! temporary files (`*.swp`, `*~`, `.#*`, vim's `4913`), the app's own log files with
//! their per-instance and rotated forms, and hotrun's runtime folder.
//! `ignore_watch` entries follow PM2/chokidar: relative to the app's cwd; a plain name or
//! path (`node_modules`, `logs`, `src/gen`) means that path and everything under it; a glob
//! (`*.log`, `logs/**`) matches as written, `*` not crossing `/`. An entry starting with
//! `!` takes a path back, from the defaults too (`!.env`); it must lie in a watched folder
//! (hotrun places no watch inside an ignored folder).

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Defaults, matched against the path relative to the watched root (any depth).
const DEFAULTS: &[&str] = &[
    "**/node_modules",
    "**/node_modules/**",
    "**/.*",
    "**/.*/**",
    "**/*.swp",
    "**/*.swx",
    "**/*~",
    "**/4913",
];

/// A compiled set of ignore rules for one app.
#[derive(Debug, Clone)]
pub struct IgnoreSet {
    cwd: PathBuf,
    defaults: GlobSet,
    user: GlobSet,
    negated: GlobSet,
    /// hotrun's own files: the app's logs (exact, `-<id>` and rotated forms), the runtime
    /// folder and what is in it.
    own_files: GlobSet,
}

/// An `ignore_watch` entry that is not a valid glob.
#[derive(Debug, thiserror::Error)]
#[error("ignore_watch: {pattern:?} is not a valid pattern: {reason}")]
pub struct BadPattern {
    pub pattern: String,
    pub reason: String,
}

fn glob(pattern: &str) -> Result<Glob, BadPattern> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| BadPattern {
            pattern: pattern.to_string(),
            reason: e.kind().to_string(),
        })
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Adds a PM2 entry: the pattern itself, and for a plain path everything under it.
fn add_entry(set: &mut GlobSetBuilder, entry: &str) -> Result<(), BadPattern> {
    let entry = entry.trim_start_matches("./").trim_end_matches('/');
    if entry.is_empty() {
        return Ok(());
    }
    set.add(glob(entry)?);
    if is_glob(entry) {
        if entry.ends_with("/**") {
            // `logs/**` also means the folder itself (no watch inside it).
            set.add(glob(entry.trim_end_matches("/**"))?);
        }
    } else {
        set.add(glob(&format!("{entry}/**"))?);
    }
    Ok(())
}

impl IgnoreSet {
    /// Rules for an app whose cwd is `cwd`, from its `ignore_watch`, and hotrun's own
    /// files and folders (`own_paths`: the app's log files, hotrun's runtime folder).
    pub fn new(
        cwd: &Path,
        ignore_watch: &[String],
        own_paths: &[PathBuf],
    ) -> Result<IgnoreSet, BadPattern> {
        let mut defaults = GlobSetBuilder::new();
        for d in DEFAULTS {
            defaults.add(glob(d)?);
        }
        let (mut user, mut negated) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for entry in ignore_watch {
            match entry.strip_prefix('!') {
                Some(back) => add_entry(&mut negated, back)?,
                None => add_entry(&mut user, entry)?,
            }
        }
        let mut own = GlobSetBuilder::new();
        for file in own_paths {
            let text = globset::escape(&file.display().to_string());
            // The path, everything in it (the runtime folder), its rotated forms
            // (out.log.1, out.log.2.gz).
            for pattern in [text.clone(), format!("{text}/**"), format!("{text}.*")] {
                own.add(Glob::new(&pattern).map_err(|e| BadPattern {
                    pattern: pattern.clone(),
                    reason: e.to_string(),
                })?);
            }
            // PM2's per-instance names: out.log -> out-3.log; pm2-logrotate's rotated
            // names: out__2026-12-03_12-00-00.log, out-3__2026-....log.
            let per_instance = crate::logs::instance_path(file, 0).display().to_string();
            if let Some((head, tail)) = per_instance.rsplit_once("-0") {
                let head = globset::escape(head);
                own.add(glob(&format!("{head}-*{}", globset::escape(tail)))?);
                own.add(glob(&format!("{head}__*"))?);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| BadPattern {
                pattern: String::new(),
                reason: e.to_string(),
            })
        };
        Ok(IgnoreSet {
            cwd: cwd.to_path_buf(),
            defaults: build(defaults)?,
            user: build(user)?,
            negated: build(negated)?,
            own_files: build(own)?,
        })
    }

    /// Whether `path`, found under the watched `root`, is ignored.
    pub fn ignored(&self, root: &Path, path: &Path) -> bool {
        let in_root = path.strip_prefix(root).unwrap_or(path);
        let in_cwd = path.strip_prefix(&self.cwd).unwrap_or(path);
        let hit = (!in_root.as_os_str().is_empty() && self.defaults.is_match(in_root))
            || self.user.is_match(in_cwd)
            || self.own_files.is_match(path);
        hit && !self.negated.is_match(in_cwd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ignore_watch: &[&str]) -> IgnoreSet {
        let rules: Vec<String> = ignore_watch.iter().map(|s| s.to_string()).collect();
        IgnoreSet::new(
            Path::new("/app"),
            &rules,
            &[PathBuf::from("/app/logs/out.log")],
        )
        .unwrap()
    }

    #[test]
    fn defaults_always_apply() {
        let s = set(&["logs"]);
        let root = Path::new("/app");
        let table = [
            ("/app", false),
            ("/app/server.js", false),
            ("/app/src/pages/index.js", false),
            ("/app/node_modules", true),
            ("/app/node_modules/next/dist/index.js", true),
            ("/app/packages/ui/node_modules/x.js", true),
            ("/app/.git", true),
            ("/app/.git/index.lock", true),
            ("/app/.next/cache/x", true),
            ("/app/src/.server.js.swp", true),
            ("/app/src/server.js~", true),
            ("/app/src/.#server.js", true),
            ("/app/src/4913", true),
            ("/app/logs/today.txt", true),
            ("/app/logs", true),
            ("/app/logs/out.log", true),
        ];
        for (path, want) in table {
            assert_eq!(s.ignored(root, Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn pm2_forms_of_ignore_watch() {
        let s = set(&["*.log", "tmp/**", "src/generated", "./dist/"]);
        let root = Path::new("/app");
        let table = [
            ("/app/a.log", true),
            ("/app/sub/a.log", false), // `*` stays in the top folder, as in chokidar
            ("/app/tmp", true),
            ("/app/tmp/x/y.js", true),
            ("/app/src/generated/a.js", true),
            ("/app/src/generated", true),
            ("/app/src/generator.js", false),
            ("/app/dist/bundle.js", true),
        ];
        for (path, want) in table {
            assert_eq!(s.ignored(root, Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn hotruns_own_files_are_ignored_wherever_they_are_rotated_too() {
        let s = IgnoreSet::new(
            Path::new("/app"),
            &[],
            &[
                PathBuf::from("/app/out.log"),
                PathBuf::from("/var/log/web.err"),
                PathBuf::from("/app/run"),
            ],
        )
        .unwrap();
        let root = Path::new("/app");
        for (path, want) in [
            ("/app/out.log", true),
            ("/app/out-0.log", true),
            ("/app/out-12.log", true),
            ("/app/outside.log", false),
            ("/app/out.log.1", true),
            ("/app/out.log.2.gz", true),
            ("/app/out__2026-12-03_12-00-00.log", true),
            ("/app/out-2__2026-12-03_12-00-00.log", true),
            ("/app/outdated.js", false),
            ("/var/log/web.err", true),
            ("/var/log/web-3.err", true),
            ("/app/run/x", true),
            ("/app/runner.js", false),
        ] {
            assert_eq!(s.ignored(root, Path::new(path)), want, "{path}");
        }
    }

    #[test]
    fn a_bang_entry_takes_a_path_back() {
        let s = set(&["!.env", "!logs/keep.txt"]);
        let root = Path::new("/app");
        assert!(!s.ignored(root, Path::new("/app/.env")));
        assert!(s.ignored(root, Path::new("/app/.env.local")));
        assert!(!s.ignored(root, Path::new("/app/logs/keep.txt")));
    }

    #[test]
    fn defaults_are_relative_to_the_watched_root() {
        // A project under a dot-folder is still watched.
        let s = IgnoreSet::new(Path::new("/home/u/.apps/web"), &[], &[]).unwrap();
        let root = Path::new("/home/u/.apps/web");
        assert!(!s.ignored(root, Path::new("/home/u/.apps/web/server.js")));
        assert!(s.ignored(root, Path::new("/home/u/.apps/web/.git/HEAD")));
    }

    #[test]
    fn a_bad_pattern_is_an_error() {
        let err = IgnoreSet::new(Path::new("/app"), &["src/[".to_string()], &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("ignore_watch: \"src/[\" is not a valid pattern"),
            "{err}"
        );
    }
}

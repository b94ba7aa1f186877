//! Walking a watch root: the folders to watch, with every ignored folder cut off with its
//! whole subtree (no watch is placed in node_modules), and the symbolic links met on the
//! way, which the watcher follows as PM2 does, within bounds (see `Link`).

use std::path::{Path, PathBuf};

use super::IgnoreSet;

/// What one walk found.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Kept folders, and the start itself when it is a file.
    pub places: Vec<PathBuf>,
    /// Symbolic links below the start that are not ignored.
    pub links: Vec<PathBuf>,
    /// The walk stopped at its limit of places.
    pub over: bool,
}

/// Walks `start` (inside the watch root `root`), at most `limit` places. A start that is
/// itself a link is followed (a root named in `watch`, or a link the watcher chose to follow).
pub(super) fn scan(start: &Path, root: &Path, ignore: &IgnoreSet, limit: usize) -> Found {
    let filter = ignore.clone();
    let root_owned = root.to_path_buf();
    let walker = ::ignore::WalkBuilder::new(start)
        .standard_filters(false)
        .hidden(false)
        .follow_links(false)
        .filter_entry(move |e| !filter.ignored(&root_owned, e.path()))
        .build();
    let mut found = Found::default();
    for entry in walker.flatten() {
        if entry.depth() > 0 && entry.path_is_symlink() {
            found.links.push(entry.into_path());
            continue;
        }
        // The start, whether a folder, a file or a link to either, and every folder below.
        if entry.depth() == 0 || entry.file_type().is_some_and(|t| t.is_dir()) {
            if found.places.len() == limit {
                found.over = true;
                break;
            }
            found.places.push(entry.into_path());
        }
    }
    found
}

/// Where a symbolic link inside a watch root leads, and so what the watcher does with it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Link {
    /// Nowhere (dangling): nothing to watch; its folder's watch sees it change.
    Dangling,
    /// A file: watched itself, so that changes of its target reload (a watch follows it).
    File,
    /// The root or a folder above it (`ln -s . self`, `ln -s .. up`): a loop, not followed.
    Loop,
    /// A folder the walk of the root reaches anyway under its real path.
    Walked,
    /// A folder outside the tree (or in an ignored part of it): walked through the link,
    /// within the watcher's budget of linked folders.
    Follow(PathBuf),
}

/// Sorts `link`, found under `root`, whose real path is `root_real`.
pub(super) fn classify(link: &Path, root: &Path, root_real: &Path, ignore: &IgnoreSet) -> Link {
    let Ok(target) = std::fs::canonicalize(link) else {
        return Link::Dangling;
    };
    if !target.is_dir() {
        return Link::File;
    }
    if root_real.starts_with(&target) {
        return Link::Loop;
    }
    match target.strip_prefix(root_real) {
        Ok(rel) if !ignore.ignored(root, &root.join(rel)) => Link::Walked,
        _ => Link::Follow(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_sorted_by_where_they_lead() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let root = base.join("app");
        let outside = base.join("shared");
        for d in [&root.join("src"), &root.join("node_modules/lib"), &outside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(outside.join("x.js"), "").unwrap();
        let ignore = IgnoreSet::new(&root, &[], &[]).unwrap();
        let table: [(&str, PathBuf, Link); 7] = [
            ("self", root.clone(), Link::Loop),
            ("up", base.clone(), Link::Loop),
            ("src-again", root.join("src"), Link::Walked),
            (
                "lib",
                root.join("node_modules/lib"),
                Link::Follow(root.join("node_modules/lib")),
            ),
            ("shared", outside.clone(), Link::Follow(outside.clone())),
            ("x.js", outside.join("x.js"), Link::File),
            ("gone", base.join("nothing"), Link::Dangling),
        ];
        for (name, target, want) in table {
            let link = root.join("src").join(name);
            symlink(&target, &link).unwrap();
            assert_eq!(classify(&link, &root, &root, &ignore), want, "{name}");
        }
    }

    #[test]
    fn a_walk_lists_kept_folders_and_links_and_stops_at_its_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        for d in ["a/b", "c", "node_modules/x/y", ".git/objects"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("a/f.js"), "").unwrap();
        symlink(root.join("c"), root.join("a/link")).unwrap();
        let ignore = IgnoreSet::new(&root, &[], &[]).unwrap();
        let found = scan(&root, &root, &ignore, usize::MAX);
        let mut places = found.places.clone();
        places.sort();
        let want: Vec<PathBuf> = ["", "a", "a/b", "c"].iter().map(|p| root.join(p)).collect();
        assert_eq!(places, want);
        assert_eq!(found.links, vec![root.join("a/link")]);
        assert!(!found.over);
        let limited = scan(&root, &root, &ignore, 2);
        assert_eq!(limited.places.len(), 2);
        assert!(limited.over);
        // A root that is a file is its own place.
        let file = scan(
            &root.join("a/f.js"),
            &root.join("a/f.js"),
            &ignore,
            usize::MAX,
        );
        assert_eq!(file.places, vec![root.join("a/f.js")]);
        // A root that is a link to a folder is walked through the link.
        symlink(root.join("a"), root.join("c/to-a")).unwrap();
        let linked = scan(
            &root.join("c/to-a"),
            &root.join("c/to-a"),
            &ignore,
            usize::MAX,
        );
        let want: Vec<PathBuf> = ["c/to-a", "c/to-a/b"]
            .iter()
            .map(|p| root.join(p))
            .collect();
        let mut places = linked.places.clone();
        places.sort();
        assert_eq!(places, want);
        assert_eq!(linked.links, vec![root.join("c/to-a/link")]);
    }
}

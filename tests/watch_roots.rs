//! Watching that never goes blind: roots that are replaced (`rm -rf dist && mkdir dist`,
//! an editor's atomic save of a root that is a file) are watched again, and symbolic links
//! are followed (a shared folder outside the app, a linked file) without loops or storms
//! (a link to `.`, a link to /usr).

mod common;

use std::path::Path;

use common::http::free_port;
use common::*;

fn reloads(dir: &Path) -> i64 {
    app_status(&status(dir), "web")["reloads"].as_i64().unwrap()
}

/// Waits until `n` reloads are done and none runs, and no more follows for a second.
fn wait_reloads(h: &Hotrun, dir: &Path, n: usize) {
    h.wait_for_n("reload done", n);
    wait_reloads_held(dir, "web", n as i64);
}

/// An app in `dir` (server.js, 2 instances) with `watch` set to `watch`.
fn app_in(dir: &Path, watch: &str) {
    std::fs::copy(app("http.js"), dir.join("server.js")).unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'web', script: 'server.js', instances: 2,
               wait_ready: true, watch: {watch}, env: {{ HTTP_PORT: {port} }} }}] }};\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_root_folder_removed_and_made_again_is_watched_again() {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    std::fs::write(dist.join("a.js"), "1").unwrap();
    app_in(dir.path(), "['dist']");
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("watching for changes");
    wait_online(dir.path());

    // What a build script does: one burst, one reload.
    std::fs::remove_dir_all(&dist).unwrap();
    std::fs::create_dir(&dist).unwrap();
    std::fs::write(dist.join("a.js"), "2").unwrap();
    wait_reloads(&h, dir.path(), 1);
    assert_eq!(h.count("-> reload"), 1, "{}", h.output());

    // The new dist is watched: a later touch reloads again.
    std::fs::write(dist.join("a.js"), "3").unwrap();
    wait_reloads(&h, dir.path(), 2);
    assert!(
        h.output().contains("(dist/a.js) -> reload"),
        "{}",
        h.output()
    );

    // And again after a second replacement, with a subfolder this time.
    std::fs::remove_dir_all(&dist).unwrap();
    std::fs::create_dir_all(dist.join("lib")).unwrap();
    wait_reloads(&h, dir.path(), 3);
    std::fs::write(dist.join("lib/b.js"), "4").unwrap();
    wait_reloads(&h, dir.path(), 4);
    assert!(
        h.output().contains("(dist/lib/b.js) -> reload"),
        "{}",
        h.output()
    );
    assert_eq!(reloads(dir.path()), 4, "{}", h.output());
}

#[test]
fn an_atomic_save_of_a_root_that_is_a_file_reloads_each_time() {
    let dir = tempfile::tempdir().unwrap();
    app_in(dir.path(), "['server.js']");
    let h = Hotrun::start(dir.path(), &[]);
    h.wait_for("watching for changes");
    wait_online(dir.path());
    let script = dir.path().join("server.js");
    let source = std::fs::read_to_string(&script).unwrap();
    // What editors do: write a temp file next to it, rename it over the original (the
    // original's inode, and any watch on it, is gone).
    for n in 1..=3 {
        let tmp = dir.path().join(format!(".server.js.{n}.tmp"));
        std::fs::write(&tmp, format!("{source}\n// save {n}\n")).unwrap();
        std::fs::rename(&tmp, &script).unwrap();
        wait_reloads(&h, dir.path(), n);
        assert_eq!(h.count("-> reload"), n, "{}", h.output());
    }
    assert_eq!(
        h.count("web: 1 file changed (server.js) -> reload"),
        3,
        "{}",
        h.output()
    );
    // A file next to it is no change of the root.
    std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(reloads(dir.path()), 3, "{}", h.output());
}

#[test]
fn links_are_followed_once_without_loops_or_storms() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("app");
    let shared = base.path().join("packages/shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(shared.join("lib")).unwrap();
    std::fs::write(shared.join("lib/util.js"), "1").unwrap();
    std::fs::write(shared.join("config.js"), "1").unwrap();
    app_in(&dir, "true");
    use std::os::unix::fs::symlink;
    // A monorepo's shared folder, and the same folder again by another link.
    symlink(&shared, dir.join("shared")).unwrap();
    symlink(&shared, dir.join("shared-again")).unwrap();
    // One linked file.
    symlink(shared.join("config.js"), dir.join("config.js")).unwrap();
    // Loops and storms: the app's own folder, its parent, the system's /usr.
    symlink(".", dir.join("self")).unwrap();
    symlink("..", dir.join("up")).unwrap();
    symlink("/usr", dir.join("usr")).unwrap();

    let h = Hotrun::start(&dir, &[]);
    let line = h.wait_for("watching for changes");
    wait_online(&dir);
    // The app's folder and its parent, the shared folder and its lib (once), the linked
    // file: 5, whatever /usr holds.
    assert!(line.contains("(5 folders)"), "{line}\n{}", h.output());
    assert_eq!(inotify_watches(h.pid()), 5, "{}", h.output());
    let usr = h.wait_for("usr leads to /usr");
    assert!(
        usr.contains("more than the 1000 folders hotrun follows through links: not watched"),
        "{usr}"
    );

    // A change in the shared folder reloads the app, named by the path the app sees.
    std::fs::write(shared.join("lib/util.js"), "2").unwrap();
    wait_reloads(&h, &dir, 1);
    let out = h.output();
    assert!(
        out.contains("(shared/lib/util.js) -> reload")
            || out.contains("(shared-again/lib/util.js) -> reload"),
        "{out}"
    );
    // A change of the linked file's target reloads it too.
    std::fs::write(shared.join("config.js"), "2").unwrap();
    wait_reloads(&h, &dir, 2);
    let out = h.output();
    let second = out
        .lines()
        .filter(|l| l.contains("-> reload"))
        .nth(1)
        .unwrap_or("");
    assert!(second.contains("config.js"), "{out}");
    assert_eq!(h.count("-> reload"), 2, "{}", h.output());
}

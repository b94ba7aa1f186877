//! Watching that never loops: what hotrun itself writes into a watched folder, and what an
//! app writes there at each start, never reload it over and over (PM2 loops in both).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn reloads(dir: &Path) -> i64 {
    app_status(&status(dir), "web")["reloads"].as_i64().unwrap()
}

fn settled(dir: &Path) -> bool {
    let st = status(dir);
    let web = app_status(&st, "web");
    web["reloading"] == false
        && web["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["state"] == "online")
}

/// A hotrun whose stdout and stderr go to a file; stopped when dropped.
struct Redirected(Child);

impl Drop for Redirected {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hotrun_writing_its_own_output_into_the_watched_folder_never_reloads() {
    // `hotrun --env production > hotrun.log 2>&1` in the seed's folder (`watch: true`),
    // with an app that prints 20 lines a second.
    let dir = config_dir(&format!(
        "module.exports = {{ apps: [{{ name: 'web', script: '{}', watch: true }}] }};\n",
        app("ticker.js")
    ));
    let log = std::fs::File::create(dir.path().join("hotrun.log")).unwrap();
    let child = Command::new(HOTRUN)
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _h = Redirected(child);
    // Its output goes to the file: ask its control socket until it answers.
    wait_until("hotrun answers", || {
        hotrun_cmd(dir.path(), &["status", "--json"])
            .status
            .success()
    });
    wait_until("the app is online", || settled(dir.path()));
    let text = || std::fs::read_to_string(dir.path().join("hotrun.log")).unwrap();
    let lines_at_start = text().lines().count();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(reloads(dir.path()), 0, "{}", text());
        std::thread::sleep(Duration::from_millis(250));
    }
    let out = text();
    assert!(
        out.lines().count() > lines_at_start + 20,
        "the app kept writing: {out}"
    );
    assert!(!out.contains("-> reload"), "{out}");
}

#[test]
fn a_file_the_app_writes_at_each_start_reloads_it_once_then_never_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(app("writes_at_start.js"), dir.path().join("server.js")).unwrap();
    std::fs::write(
        dir.path().join("ecosystem.config.js"),
        "module.exports = { apps: [{ name: 'web', script: 'server.js', instances: 2,
           wait_ready: true, watch: true }] };\n",
    )
    .unwrap();
    let h = Hotrun::start(dir.path(), &[]);
    // The first start's write may be the user's: one reload; that reload's start writes
    // it again: the loop guard says so, once, and reloads no more.
    let line = h.wait_for("changed during two starts");
    assert!(
        line.contains("web: started.txt changed during two starts and at no other time")
            && line.contains("ignore_watch: ['started.txt']"),
        "{line}"
    );
    wait_until("the app settled", || settled(dir.path()));
    let before = reloads(dir.path());
    assert!(before <= 1, "{}", h.output());

    // A real change reloads once; its start's write of started.txt reloads nothing.
    let f = std::fs::File::options()
        .append(true)
        .open(dir.path().join("server.js"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now()).unwrap();
    wait_until("the edit reloads", || {
        reloads(dir.path()) == before + 1 && settled(dir.path())
    });
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(reloads(dir.path()), before + 1, "{}", h.output());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(h.count("changed during two starts"), 1, "{}", h.output());
}

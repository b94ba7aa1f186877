//! The runner's glue, tested without processes: the real `Supervisor` on a real ecosystem
//! file, with the fake effects of `fake.rs` (made-up pids, a clock that moves when the
//! test says). Each test plays a sequence users hit (a reload during a restart delay, an
//! app removed or put back mid-reload, a memory replacement, a build that hangs) and checks
//! what was spawned and signalled, and that nothing is left tracked or running.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::sync::mpsc;

use super::fake::{Fake, Kind, Life, World};
use super::rollout::Trigger;
use super::{replan, Event, Mode, RunOptions, Supervisor};
use crate::config::LoadOptions;
use crate::control::protocol::{InstanceState, ReloadEvent, ReloadResult, ReloadStep};
use crate::process::reaper::Exit;
use crate::runtime_dir::RuntimeDir;

/// One tick of the fake clock.
const TICK: Duration = Duration::from_millis(10);

struct Glue {
    sup: Supervisor,
    world: Rc<RefCell<World>>,
    dir: tempfile::TempDir,
    rt: &'static tokio::runtime::Runtime,
    rx: mpsc::Receiver<Event>,
    events: mpsc::Receiver<String>,
    seen: Vec<ReloadEvent>,
    /// Instances that said ready.
    said_ready: std::collections::HashSet<i32>,
    _enter: tokio::runtime::EnterGuard<'static>,
}

impl Glue {
    /// A runner on an ecosystem file of `apps` (JSON objects; each script is `app.js`).
    fn new(apps: &str) -> Glue {
        Glue::with_mode(apps, Mode::Serve)
    }

    fn with_mode(apps: &str, mode: Mode) -> Glue {
        let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        ));
        let enter = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.js"), "").unwrap();
        let file = dir.path().join("ecosystem.config.json");
        std::fs::write(&file, format!("{{\"apps\": [{apps}]}}")).unwrap();
        let source = replan::Source {
            opts: LoadOptions {
                config: Some(file.clone()),
                profile: None,
                only: vec![],
                cwd: dir.path().to_path_buf(),
            },
            watch_all: false,
            instances: None,
        };
        let (plan, _) = source.load().expect("the test's file loads");
        let world = Rc::new(RefCell::new(World {
            now: Some(Instant::now()),
            ..Default::default()
        }));
        let runtime = RuntimeDir::create(&plan.config).unwrap();
        let (tx, rx) = mpsc::channel(1024);
        let mut opts = RunOptions::new(mode);
        opts.source = Some(source);
        let fx = Box::new(Fake(world.clone()));
        let mut sup =
            Supervisor::new(plan, None, tx, runtime, &opts, fx, Default::default()).unwrap();
        let (etx, events) = mpsc::channel(1024);
        sup.event_followers.push(etx);
        let now = world.borrow().now();
        sup.start_initial_builds(now);
        let mut glue = Glue {
            sup,
            world,
            dir,
            rt,
            rx,
            events,
            seen: Vec::new(),
            said_ready: Default::default(),
            _enter: enter,
        };
        glue.settle();
        glue
    }

    fn now(&self) -> Instant {
        self.world.borrow().now()
    }

    /// Lets the reader tasks run, then hands what they read to the runner, tells it of the
    /// exits, and ticks, until nothing more happens.
    fn settle(&mut self) {
        for _ in 0..20 {
            self.rt.block_on(async {
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
            });
            let mut busy = false;
            while let Ok(ev) = self.rx.try_recv() {
                busy = true;
                self.sup.on_event(ev);
            }
            let exits = self.world.borrow_mut().reap();
            if !exits.is_empty() {
                busy = true;
                self.sup.on_reaped(exits);
            }
            let now = self.now();
            self.sup.tick(now);
            if !busy {
                break;
            }
        }
        while let Ok(line) = self.events.try_recv() {
            self.seen.push(serde_json::from_str(&line).unwrap());
        }
    }

    /// Moves the clock `ms` on, a tick at a time.
    fn advance(&mut self, ms: u64) {
        let end = self.now() + Duration::from_millis(ms);
        while self.now() < end {
            let next = (self.now() + TICK).min(end);
            self.world.borrow_mut().now = Some(next);
            self.settle();
        }
    }

    /// The instance `pid` says `process.send('ready')`.
    fn ready(&mut self, pid: i32) {
        self.said_ready.insert(pid);
        let serial = self.sup.pids[&pid];
        self.sup.on_event(Event::Ipc {
            serial,
            msg: json!("ready"),
        });
        self.settle();
    }

    /// Every running instance of `app` that has not said ready says it.
    fn ready_all(&mut self, app: &str) {
        for pid in self.running(app) {
            if !self.said_ready.contains(&pid) {
                self.ready(pid);
            }
        }
    }

    fn exit(&mut self, pid: i32, exit: Exit) {
        self.world.borrow_mut().exit(pid, exit);
        self.settle();
    }

    /// `hotrun reload` (the file is read again).
    fn reload(&mut self) {
        self.sup.reload_apps(None, Trigger::Command, None);
        self.settle();
    }

    /// Writes the ecosystem file anew.
    fn edit(&mut self, apps: &str) {
        let file = self.dir.path().join("ecosystem.config.json");
        std::fs::write(file, format!("{{\"apps\": [{apps}]}}")).unwrap();
    }

    fn running(&self, app: &str) -> Vec<i32> {
        self.world.borrow().running(app)
    }

    fn instances(&self, app: &str) -> Vec<i32> {
        self.world.borrow().instances(app)
    }

    fn builds(&self, app: &str) -> Vec<i32> {
        self.world.borrow().builds(app)
    }

    fn signals(&self, pid: i32) -> Vec<Signal> {
        self.world.borrow().procs[&pid].signals.clone()
    }

    fn states(&self, app: &str) -> Vec<(Option<i32>, InstanceState)> {
        let st = self.sup.status();
        let app = st.apps.iter().find(|a| a.name == app).expect("the app");
        app.instances.iter().map(|i| (i.pid, i.state)).collect()
    }

    /// Whether `hotrun status` lists the app.
    fn listed(&self, app: &str) -> bool {
        self.sup.status().apps.iter().any(|a| a.name == app)
    }

    fn last_reload(&self, app: &str) -> Option<ReloadResult> {
        let st = self.sup.status();
        let app = st.apps.iter().find(|a| a.name == app).expect("the app");
        app.last_reload.as_ref().map(|l| l.result)
    }

    /// The messages of the reload events so far.
    fn seen_messages(&self) -> Vec<String> {
        self.seen.iter().map(|e| e.message.clone()).collect()
    }

    fn slot_of(&self, pid: i32) -> u32 {
        match &self.world.borrow().procs[&pid].kind {
            Kind::Instance { id, .. } => *id,
            Kind::Build { .. } => panic!("{pid} is a build"),
        }
    }

    fn version_of(&self, pid: i32) -> Option<String> {
        match &self.world.borrow().procs[&pid].kind {
            Kind::Instance { version, .. } => version.clone(),
            Kind::Build { .. } => panic!("{pid} is a build"),
        }
    }

    fn started(&self, pid: i32) -> Instant {
        self.world.borrow().procs[&pid].started
    }

    /// Every pid the runner still tracks is a running process of the world: nothing it
    /// forgot runs, and nothing that ended is still tracked (its pipes, its IPC channel).
    fn assert_nothing_leaks(&self) {
        let world = self.world.borrow();
        let tracked: std::collections::BTreeSet<i32> = self.sup.pids.keys().copied().collect();
        let running: std::collections::BTreeSet<i32> = world
            .procs
            .iter()
            .filter(|(_, p)| p.life == Life::Running && matches!(p.kind, Kind::Instance { .. }))
            .map(|(&pid, _)| pid)
            .collect();
        assert_eq!(tracked, running, "tracked runs vs running processes");
        assert_eq!(self.sup.runs.len(), tracked.len(), "one I/O record per run");
    }
}

impl Drop for Glue {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.sup.runtime.path);
    }
}

/// `{"name": ..., "script": "app.js", "wait_ready": true, ...extra}`.
fn app(name: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(r#"{{"name": "{name}", "script": "app.js", "wait_ready": true{extra}}}"#)
}

/// Starts `app`'s first instances and makes each say ready.
fn online(g: &mut Glue, name: &str) -> Vec<i32> {
    g.ready_all(name);
    let pids = g.running(name);
    assert!(
        g.states(name)
            .iter()
            .all(|(_, s)| *s == InstanceState::Online),
        "{:?}",
        g.states(name)
    );
    pids
}

/// Says ready for every new instance of `apps` and moves on, until no reload runs and
/// every slot of theirs is online (10 s of fake time at most).
fn roll_to_the_end(g: &mut Glue, apps: &[&str]) {
    for _ in 0..100 {
        for app in apps {
            g.ready_all(app);
        }
        let st = g.sup.status();
        let done = st
            .apps
            .iter()
            .filter(|a| apps.contains(&a.name.as_str()))
            .all(|a| !a.reloading && a.instances.iter().all(|i| i.state == InstanceState::Online));
        if done {
            return;
        }
        g.advance(100);
    }
    panic!("still rolling: {:?}", g.seen_messages());
}

#[test]
fn a_reload_while_a_slot_waits_in_its_restart_delay_restarts_it_on_the_new_plan_after_the_delay() {
    let v = |n: u32| {
        app(
            "web",
            &format!(r#""instances": 2, "restart_delay": 2000, "env": {{"VERSION": "{n}"}}"#),
        )
    };
    let mut g = Glue::new(&v(1));
    let old = online(&mut g, "web");
    assert_eq!(old.len(), 2);
    // Slot 1 crashes and waits 2 s before its restart; a reload of a new version comes.
    g.exit(old[1], Exit::Code(1));
    let crashed = g.now();
    g.edit(&v(2));
    g.reload();
    roll_to_the_end(&mut g, &["web"]);
    g.advance(3000);
    let running = g.running("web");
    assert_eq!(running.len(), 2, "{running:?} {:?}", g.states("web"));
    assert!(!running.contains(&old[0]), "slot 0 was replaced");
    assert_eq!(g.signals(old[0]), [Signal::SIGINT]);
    let mut slots: Vec<u32> = running.iter().map(|&p| g.slot_of(p)).collect();
    slots.sort();
    assert_eq!(slots, [0, 1], "one instance per slot");
    for &pid in &running {
        assert_eq!(
            g.version_of(pid).as_deref(),
            Some("2"),
            "every slot runs the new plan"
        );
    }
    let restarted = *running.iter().find(|&&p| g.slot_of(p) == 1).unwrap();
    assert!(
        g.started(restarted) >= crashed + Duration::from_millis(2000),
        "slot 1 waited its restart_delay"
    );
    assert_eq!(g.last_reload("web"), Some(ReloadResult::Ok));
    g.assert_nothing_leaks();
}

#[test]
fn an_app_removed_during_its_build_stops_and_starts_nothing() {
    let web = app("web", r#""instances": 2, "build": "make""#);
    let other = app("other", "");
    let mut g = Glue::new(&format!("{web}, {other}"));
    let first = g.builds("web");
    assert_eq!(first.len(), 1);
    assert!(
        g.running("web").is_empty(),
        "nothing starts before the first build"
    );
    g.exit(first[0], Exit::Code(0));
    let old = online(&mut g, "web");
    online(&mut g, "other");
    g.reload();
    let build = *g.builds("web").last().unwrap();
    assert_ne!(build, first[0], "the reload builds first");
    // Gone from the file while its build runs.
    g.edit(&other);
    g.reload();
    assert!(
        g.signals(build).contains(&Signal::SIGKILL),
        "{:?}",
        g.signals(build)
    );
    roll_to_the_end(&mut g, &["other"]);
    g.advance(3000);
    assert!(g.running("web").is_empty(), "{:?}", g.seen_messages());
    assert_eq!(g.instances("web"), old, "nothing started after the removal");
    for pid in old {
        assert_eq!(g.signals(pid), [Signal::SIGINT]);
    }
    assert!(!g.listed("web"), "a removed app leaves status");
    g.assert_nothing_leaks();
}

#[test]
fn an_app_removed_during_its_rollout_stops_its_successor_and_its_old_instances() {
    let web = app("web", r#""instances": 2"#);
    let other = app("other", "");
    let mut g = Glue::new(&format!("{web}, {other}"));
    let old = online(&mut g, "web");
    online(&mut g, "other");
    g.reload();
    let successor = *g.instances("web").last().unwrap();
    assert!(!old.contains(&successor), "slot 0's successor started");
    g.edit(&other);
    g.reload();
    roll_to_the_end(&mut g, &["other"]);
    g.advance(3000);
    assert!(g.running("web").is_empty(), "{:?}", g.seen_messages());
    assert_eq!(
        g.instances("web").len(),
        3,
        "nothing started after the removal"
    );
    assert!(
        !g.signals(successor).is_empty(),
        "the successor was stopped"
    );
    assert!(
        g.seen
            .iter()
            .any(|e| matches!(e.step, ReloadStep::ReloadFailed { .. })
                && e.app.as_deref() == Some("web")),
        "{:?}",
        g.seen_messages()
    );
    g.assert_nothing_leaks();
}

#[test]
fn an_app_put_back_while_its_old_instance_still_stops_kills_it_at_kill_timeout_then_starts() {
    let web = app("web", r#""build": "make", "kill_timeout": 1600"#);
    let other = app("other", "");
    let mut g = Glue::new(&format!("{web}, {other}"));
    g.world.borrow_mut().stubborn.insert("web".into());
    g.exit(g.builds("web")[0], Exit::Code(0));
    let old = online(&mut g, "web")[0];
    online(&mut g, "other");
    g.edit(&other);
    g.reload();
    let asked = g.now();
    assert_eq!(g.signals(old), [Signal::SIGINT], "it ignores SIGINT");
    g.advance(300);
    // Back in the file; its build is quick.
    g.edit(&format!("{web}, {other}"));
    g.reload();
    let build = *g.builds("web").last().unwrap();
    g.exit(build, Exit::Code(0));
    g.advance(1000);
    assert_eq!(g.running("web"), [old], "nothing starts beside the old one");
    g.advance(500);
    assert_eq!(g.signals(old), [Signal::SIGINT, Signal::SIGKILL]);
    assert!(g.now() >= asked + Duration::from_millis(1600));
    roll_to_the_end(&mut g, &["web", "other"]);
    let running = g.running("web");
    assert_eq!(running.len(), 1);
    assert_ne!(running[0], old);
    assert!(g.started(running[0]) >= asked + Duration::from_millis(1600));
    g.assert_nothing_leaks();
}

#[test]
fn a_memory_replacement_of_an_app_with_a_build_replaces_its_slot_without_a_build() {
    let mut g = Glue::new(&app(
        "web",
        r#""instances": 2, "build": "make", "max_memory_restart": "100M""#,
    ));
    g.exit(g.builds("web")[0], Exit::Code(0));
    let old = online(&mut g, "web");
    g.world.borrow_mut().rss.insert(old[0], 200 << 20);
    g.advance(1500);
    let started = g.instances("web");
    assert_eq!(
        started.len(),
        3,
        "slot 0's successor: {:?}",
        g.seen_messages()
    );
    assert_eq!(g.slot_of(started[2]), 0);
    assert_eq!(
        g.builds("web").len(),
        1,
        "no build for a memory replacement"
    );
    roll_to_the_end(&mut g, &["web"]);
    g.advance(3000);
    assert_eq!(g.running("web"), [old[1], started[2]]);
    assert_eq!(g.signals(old[0]), [Signal::SIGINT]);
    assert!(g.signals(old[1]).is_empty(), "slot 1 is untouched");
    g.assert_nothing_leaks();
}

#[test]
fn a_build_past_its_build_timeout_is_killed_and_fails_the_reload_naming_the_app() {
    let mut g = Glue::new(&app(
        "web",
        r#""instances": 2, "build": "make", "build_timeout": 2000"#,
    ));
    g.exit(g.builds("web")[0], Exit::Code(0));
    let old = online(&mut g, "web");
    g.reload();
    let build = *g.builds("web").last().unwrap();
    g.advance(1900);
    assert!(g.signals(build).is_empty());
    g.advance(200);
    // Killed at its timeout, and its group once more when it has exited.
    let sent = g.signals(build);
    assert!(
        !sent.is_empty() && sent.iter().all(|&s| s == Signal::SIGKILL),
        "{sent:?}"
    );
    g.advance(100);
    assert_eq!(g.last_reload("web"), Some(ReloadResult::Failed));
    let failed: Vec<&ReloadEvent> = g
        .seen
        .iter()
        .filter(|e| matches!(e.step, ReloadStep::ReloadFailed { .. }))
        .collect();
    assert_eq!(failed.len(), 1, "{:?}", g.seen_messages());
    assert_eq!(failed[0].instance, None, "an app's failure, not slot 0's");
    assert_eq!(
        failed[0].step,
        ReloadStep::ReloadFailed {
            reason: "build failed: timed out after 2000 ms (build_timeout)".into(),
            failed: "build".into(),
        }
    );
    let msg = &failed[0].message;
    assert!(msg.starts_with("web: "), "{msg}");
    assert!(
        msg.contains("timed out after 2000 ms (build_timeout)"),
        "{msg}"
    );
    assert_eq!(g.running("web"), old, "the old instances keep serving");
    assert!(old.iter().all(|&p| g.signals(p).is_empty()));
    assert_eq!(g.instances("web"), old, "nothing started");
    g.assert_nothing_leaks();
}

#[test]
fn a_stop_signal_during_a_checks_reload_fails_the_check() {
    let mut g = Glue::with_mode(&app("web", r#""instances": 2"#), Mode::Check { reloads: 1 });
    let old = online(&mut g, "web");
    // The check's reload has started slot 0's successor; SIGTERM comes.
    assert_eq!(g.instances("web").len(), 3, "{:?}", g.seen_messages());
    let now = g.now();
    g.sup.on_stop_signal(Signal::SIGTERM, now);
    g.advance(3000);
    assert!(g.running("web").is_empty());
    for pid in old {
        assert_eq!(g.signals(pid), [Signal::SIGINT]);
    }
    let why = g.sup.check.failure.clone();
    assert_eq!(
        why.as_deref(),
        Some("web: reload abandoned: hotrun is stopping"),
        "an interrupted check is no success"
    );
    let now = g.now();
    assert_eq!(g.sup.finished(now), Some(crate::exit::FAILURE));
    g.assert_nothing_leaks();
}

/// A replaced instance with a port is asked to stop once its accept queue is empty and
/// every request it accepted has been read (the kernel says: `requests_pending`), after
/// `KEEP_REPLACED` (50 ms) and not `drain_delay` later; one that still holds a
/// connection not read yet waits `drain_delay` out.
#[test]
fn a_drained_instance_is_asked_to_stop_once_its_requests_are_read_at_most_drain_delay_later() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!(r#""instances": 2, "port": {port}, "drain_delay": 400"#);
    let mut g = Glue::new(&app("web", &extra));
    let old = online(&mut g, "web");
    // The first old instance has read every request; the second still holds one.
    g.world.borrow_mut().settled.insert(old[0]);
    g.reload();
    let first_new = *g.running("web").iter().find(|p| !old.contains(p)).unwrap();
    g.ready(first_new);
    let took = g.now();
    g.advance(40);
    assert!(g.signals(old[0]).is_empty(), "kept KEEP_REPLACED at least");
    g.advance(20);
    assert_eq!(
        g.signals(old[0]),
        vec![Signal::SIGINT],
        "asked once KEEP_REPLACED passed"
    );
    assert!(g.now() - took < Duration::from_millis(100));
    let second_new = *g
        .running("web")
        .iter()
        .find(|p| !old.contains(p) && **p != first_new)
        .unwrap();
    g.ready(second_new);
    let replaced = g.now();
    g.advance(380);
    assert!(g.signals(old[1]).is_empty(), "not before drain_delay");
    while g.signals(old[1]).is_empty() {
        assert!(
            g.now() < replaced + Duration::from_millis(500),
            "never asked"
        );
        g.advance(10);
    }
    assert!(g.now() >= replaced + Duration::from_millis(400));
}

//! Test helpers shared by the supervisor's unit tests.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::plan::{AppPlan, Command, ExecMode, LogPlan};

/// A plain one-instance app, for tests to adjust.
pub fn app() -> AppPlan {
    AppPlan {
        name: "app".into(),
        script: "/srv/app.js".into(),
        args: vec![],
        cwd: "/srv".into(),
        interpreter: Some("node".into()),
        interpreter_args: vec![],
        command: Command {
            program: "node".into(),
            args: vec!["/srv/app.js".into()],
        },
        instances: 1,
        exec_mode: ExecMode::Fork,
        wait_ready: false,
        listen_timeout: Duration::from_millis(3000),
        kill_timeout: Duration::from_millis(1600),
        drain_delay: Duration::from_millis(100),
        kill_signal: nix::sys::signal::Signal::SIGINT,
        shutdown_with_message: false,
        max_memory_restart: None,
        autorestart: true,
        max_restarts: 16,
        min_uptime: Duration::from_millis(1000),
        restart_delay: Duration::ZERO,
        exp_backoff_restart_delay: None,
        stop_exit_codes: vec![],
        watch: vec![],
        ignore_watch: vec![],
        watch_delay: Duration::from_millis(100),
        watch_poll: None,
        env: BTreeMap::new(),
        instance_var: "NODE_APP_INSTANCE".into(),
        increment_var: None,
        cron_restart: None,
        port: None,
        listen: vec![],
        max_surge: 1,
        min_ready: Duration::ZERO,
        ready_pattern: None,
        build: None,
        build_timeout: Duration::from_secs(600),
        shutdown_delay: Duration::ZERO,
        readiness_probe: None,
        liveness_probe: None,
        canary: None,
        logs: LogPlan::default(),
    }
}

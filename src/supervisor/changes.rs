//! What differs between two plans of one app, in the user's words: what a reload says
//! it changes, and whether only `instances` did (the app is then scaled, not rolled).

use crate::plan::AppPlan;

/// What differs between two plans of one app, in the user's words (each key by its
/// name); empty when nothing does. Environment values are never shown, only their names.
pub fn describe(old: &AppPlan, new: &AppPlan) -> Vec<String> {
    // Every field of the plan, by name: a field added to AppPlan does not compile here
    // until it is placed.
    let AppPlan {
        name: _, // apps are matched by name
        script,
        args,
        cwd,
        interpreter,
        interpreter_args,
        command: _, // derived from the script, args and interpreter
        instances,
        exec_mode,
        wait_ready,
        listen_timeout,
        kill_timeout,
        drain_delay,
        kill_signal,
        shutdown_with_message,
        max_memory_restart,
        autorestart,
        max_restarts,
        min_uptime,
        restart_delay,
        exp_backoff_restart_delay,
        stop_exit_codes,
        watch,
        ignore_watch,
        watch_delay,
        watch_poll,
        env,
        instance_var,
        cron_restart,
        increment_var,
        port,
        listen,
        max_surge,
        min_ready,
        ready_pattern,
        build,
        build_timeout,
        shutdown_delay,
        readiness_probe,
        liveness_probe,
        canary,
        logs,
    } = new;
    let mut out = Vec::new();
    let mut env_changes = Vec::new();
    for (k, v) in env {
        match old.env.get(k) {
            None => env_changes.push(format!("{k} added")),
            Some(o) if o != v => env_changes.push(format!("{k} changed")),
            _ => {}
        }
    }
    for k in old.env.keys().filter(|k| !env.contains_key(*k)) {
        env_changes.push(format!("{k} removed"));
    }
    if !env_changes.is_empty() {
        out.push(format!("env {}", env_changes.join(", ")));
    }
    if old.instances != *instances {
        out.push(format!("instances {} -> {instances}", old.instances));
    }
    let fields = [
        ("script", old.script != *script),
        ("args", old.args != *args),
        ("interpreter", old.interpreter != *interpreter),
        (
            "interpreter_args",
            old.interpreter_args != *interpreter_args,
        ),
        ("cwd", old.cwd != *cwd),
        ("exec_mode", old.exec_mode != *exec_mode),
        ("wait_ready", old.wait_ready != *wait_ready),
        ("listen_timeout", old.listen_timeout != *listen_timeout),
        ("kill_timeout", old.kill_timeout != *kill_timeout),
        ("drain_delay", old.drain_delay != *drain_delay),
        ("kill_signal", old.kill_signal != *kill_signal),
        (
            "shutdown_with_message",
            old.shutdown_with_message != *shutdown_with_message,
        ),
        (
            "max_memory_restart",
            old.max_memory_restart != *max_memory_restart,
        ),
        ("autorestart", old.autorestart != *autorestart),
        ("max_restarts", old.max_restarts != *max_restarts),
        ("min_uptime", old.min_uptime != *min_uptime),
        ("restart_delay", old.restart_delay != *restart_delay),
        (
            "exp_backoff_restart_delay",
            old.exp_backoff_restart_delay != *exp_backoff_restart_delay,
        ),
        ("stop_exit_codes", old.stop_exit_codes != *stop_exit_codes),
        ("watch", old.watch != *watch),
        ("ignore_watch", old.ignore_watch != *ignore_watch),
        ("watch_delay", old.watch_delay != *watch_delay),
        ("watch_options", old.watch_poll != *watch_poll),
        ("instance_var", old.instance_var != *instance_var),
        ("cron_restart", old.cron_restart != *cron_restart),
        ("increment_var", old.increment_var != *increment_var),
        ("port", old.port != *port),
        ("listen", old.listen != *listen),
        ("max_surge", old.max_surge != *max_surge),
        ("min_ready", old.min_ready != *min_ready),
        ("ready_pattern", old.ready_pattern != *ready_pattern),
        ("build", old.build != *build),
        ("build_timeout", old.build_timeout != *build_timeout),
        ("shutdown_delay", old.shutdown_delay != *shutdown_delay),
        ("readiness_probe", old.readiness_probe != *readiness_probe),
        ("liveness_probe", old.liveness_probe != *liveness_probe),
        ("canary", old.canary != *canary),
        ("logs", old.logs != *logs),
    ];
    out.extend(
        fields
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| format!("{name} changed")),
    );
    out
}

/// Only `instances` differs: the app is scaled, its other instances untouched.
pub fn only_instances_changed(old: &AppPlan, new: &AppPlan) -> bool {
    let mut same = new.clone();
    same.instances = old.instances;
    old.instances != new.instances && &same == old
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::tests_support::app;

    #[test]
    fn what_changed_is_said_in_one_line_per_app() {
        let old = {
            let mut p = app();
            p.env.insert("API_URL".into(), "a".into());
            p.env.insert("OLD".into(), "x".into());
            p.instances = 3;
            p
        };
        type Change = Box<dyn Fn(&mut AppPlan)>;
        let table: Vec<(&str, Change, Vec<&str>)> = vec![
            ("nothing", Box::new(|_| {}), vec![]),
            (
                "env",
                Box::new(|p| {
                    p.env.insert("API_URL".into(), "b".into());
                    p.env.insert("NEW_FLAG".into(), "1".into());
                    p.env.remove("OLD");
                }),
                vec!["env API_URL changed, NEW_FLAG added, OLD removed"],
            ),
            (
                "instances",
                Box::new(|p| p.instances = 4),
                vec!["instances 3 -> 4"],
            ),
            (
                "script and timeouts",
                Box::new(|p| {
                    p.script = "/srv/other.js".into();
                    p.kill_timeout = std::time::Duration::from_secs(9);
                }),
                vec!["script changed", "kill_timeout changed"],
            ),
            (
                "restart policy",
                Box::new(|p| p.max_restarts = 3),
                vec!["max_restarts changed"],
            ),
            (
                "signal, schedule and logs",
                Box::new(|p| {
                    p.kill_signal = nix::sys::signal::Signal::SIGTERM;
                    p.cron_restart = Some("0 3 * * *".into());
                    p.logs.merge_logs = !p.logs.merge_logs;
                }),
                vec![
                    "kill_signal changed",
                    "cron_restart changed",
                    "logs changed",
                ],
            ),
        ];
        for (name, change, want) in table {
            let mut new = old.clone();
            change(&mut new);
            assert_eq!(describe(&old, &new), want, "{name}");
        }
    }

    #[test]
    fn only_instances() {
        let old = app();
        let mut more = old.clone();
        more.instances = 4;
        assert!(only_instances_changed(&old, &more));
        let mut both = more.clone();
        both.env.insert("X".into(), "1".into());
        assert!(!only_instances_changed(&old, &both));
        assert!(!only_instances_changed(&old, &old.clone()));
    }
}

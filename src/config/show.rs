//! `hotrun config` without `--json`: a readable summary of the plan, one block per app.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use crate::plan::{AppPlan, Plan};

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Bytes as the largest whole K/M/G unit PM2 would accept, else bytes.
fn size(b: u64) -> String {
    for (unit, f) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if b >= f && b.is_multiple_of(f) {
            return format!("{}{unit} ({b} bytes)", b / f);
        }
    }
    format!("{b} bytes")
}

/// Quotes a word for display when it has spaces or quotes.
fn word(s: &str) -> String {
    if !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn path_list(paths: &[impl AsRef<Path>]) -> String {
    paths
        .iter()
        .map(|p| p.as_ref().display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The plan as text: a header line, then one indented block per app.
pub fn render_human(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = write!(out, "config   {}", plan.config.display());
    if let Some(p) = &plan.profile {
        let _ = write!(out, "  (profile {p})");
    }
    let _ = writeln!(
        out,
        "\n{} app{}",
        plan.apps.len(),
        if plan.apps.len() == 1 { "" } else { "s" }
    );
    for app in &plan.apps {
        out.push('\n');
        app_block(&mut out, app);
    }
    out
}

/// One app's block: a line per setting, `KEY  VALUE`.
fn app_block(out: &mut String, a: &AppPlan) {
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<10} {v}");
    };
    let mut cmd = vec![word(&a.command.program)];
    cmd.extend(a.command.args.iter().map(|s| word(s)));
    let header = format!("{} ({} x{})", a.name, a.exec_mode.as_str(), a.instances);
    line("app", header);
    line("command", cmd.join(" "));
    line("cwd", a.cwd.display().to_string());
    line("ready", ready(a));
    if let Some(live) = liveness(a) {
        line("liveness", live);
    }
    if let Some(hold) = a.canary {
        let canary = format!(
            "a reload replaces one instance first and holds it {} before the rest; rolled back if it fails",
            ms(hold)
        );
        line("canary", canary);
    }
    line("stop", stop(a));
    line("restart", restart(a));
    if let Some(m) = a.max_memory_restart {
        line("memory", format!("restart above {}", size(m)));
    }
    if let Some(w) = watch(a) {
        line("watch", w);
    }
    if let Some(l) = logs(a) {
        line("logs", l);
    }
    line("instance", format!("id in {}", a.instance_var));
    if let Some(var) = &a.increment_var {
        line("increment", format!("{var} + instance id"));
    }
    if a.env.is_empty() {
        line("env", "(none besides hotrun's own environment)".into());
    } else {
        let mut first = true;
        for (k, v) in &a.env {
            line(if first { "env" } else { "" }, format!("{k}={}", word(v)));
            first = false;
        }
    }
}

/// When an instance counts as ready.
fn ready(a: &AppPlan) -> String {
    let own = own_ready(a);
    match &a.readiness_probe {
        None => own,
        Some(p) => format!(
            "{own}; then its readiness probe ({} on its own socket, every {}, {} timeout, first after {})",
            p.describe(),
            ms(p.period),
            ms(p.timeout),
            ms(p.initial_delay)
        ),
    }
}

/// The liveness probe, when set.
fn liveness(a: &AppPlan) -> Option<String> {
    let p = a.liveness_probe.as_ref()?;
    Some(format!(
        "{} on its own socket every {} ({} timeout, first after {}); {} failures in a row replace the instance",
        p.describe(),
        ms(p.period),
        ms(p.timeout),
        ms(p.initial_delay),
        p.failure_threshold
    ))
}

/// How an instance says it is ready itself.
fn own_ready(a: &AppPlan) -> String {
    if a.wait_ready {
        format!(
            "process.send('ready') or READY=1, within {}",
            ms(a.listen_timeout)
        )
    } else if let Some(p) = &a.ready_pattern {
        format!(
            "an output line matching /{p}/, within {}",
            ms(a.listen_timeout)
        )
    } else {
        format!(
            "when it listens on its shared port (Node apps) or sends READY=1, within {}; \
             with no port hotrun knows of, after min_uptime ({})",
            ms(a.listen_timeout),
            ms(a.min_uptime)
        )
    }
}

/// How an instance is stopped.
fn stop(a: &AppPlan) -> String {
    if a.shutdown_with_message {
        format!("'shutdown' message, SIGKILL after {}", ms(a.kill_timeout))
    } else {
        format!(
            "{}, SIGKILL after {}; a replaced instance is drained first (drain_delay {})",
            a.kill_signal.as_str(),
            ms(a.kill_timeout),
            ms(a.drain_delay)
        )
    }
}

/// When an instance that exits is restarted.
fn restart(a: &AppPlan) -> String {
    let mut restart = if a.autorestart {
        format!(
            "on exit, errored after {} restarts under {} uptime",
            a.max_restarts,
            ms(a.min_uptime)
        )
    } else {
        "never (autorestart false)".to_string()
    };
    if let Some(b) = a.exp_backoff_restart_delay {
        let _ = write!(restart, ", backoff from {}", ms(b));
    } else if !a.restart_delay.is_zero() {
        let _ = write!(restart, ", delay {}", ms(a.restart_delay));
    }
    if !a.stop_exit_codes.is_empty() {
        let codes: Vec<String> = a.stop_exit_codes.iter().map(|c| c.to_string()).collect();
        let _ = write!(restart, ", not after exit codes {}", codes.join(" "));
    }
    restart
}

/// What is watched, when anything is.
fn watch(a: &AppPlan) -> Option<String> {
    if a.watch.is_empty() {
        return None;
    }
    let mut w = path_list(&a.watch);
    if !a.ignore_watch.is_empty() {
        let _ = write!(w, " (ignoring {})", a.ignore_watch.join(", "));
    }
    if !a.watch_delay.is_zero() {
        let _ = write!(w, ", delay {}", ms(a.watch_delay));
    }
    Some(w)
}

/// The log files and how lines are written to them, when there is anything to say.
fn logs(a: &AppPlan) -> Option<String> {
    let mut logs = Vec::new();
    if let Some(p) = &a.logs.out_file {
        logs.push(format!("out {}", p.display()));
    }
    if let Some(p) = &a.logs.error_file {
        logs.push(format!("err {}", p.display()));
    }
    if let Some(p) = &a.logs.log_file {
        logs.push(format!("all {}", p.display()));
    }
    if !logs.is_empty() {
        logs.push(if a.logs.merge_logs {
            "merged".into()
        } else {
            "one file per instance".into()
        });
    }
    if let Some(f) = &a.logs.date_format {
        logs.push(format!("dated {f}"));
    }
    (!logs.is_empty()).then(|| logs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_words() {
        assert_eq!(size(314_572_800), "300M (314572800 bytes)");
        assert_eq!(size(1000), "1000 bytes");
        assert_eq!(word("a b"), "'a b'");
        assert_eq!(word("ab"), "ab");
    }
}

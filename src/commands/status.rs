//! `hotrun status` (a table like `pm2 ls`, or JSON), `status --ready`, and `hotrun ls`
//! (every hotrun of this user).

use super::{ask, options};
use crate::cli::Global;
use crate::config;
use crate::control::client;
use crate::control::protocol::{InstanceState, Request, Status};
use crate::{exit, logs};

/// `hotrun status [--json]`.
pub fn status(global: &Global, json: bool) -> i32 {
    let reply = match ask(global, Request::Status) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut status = match reply.into_status() {
        Ok(status) => status,
        Err(e) => {
            logs::say(&e);
            return exit::FAILURE;
        }
    };
    if !global.only.is_empty() {
        status.apps.retain(|a| global.only.contains(&a.name));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status).expect("json"));
    } else {
        print!("{}", status_table(&status));
    }
    exit::OK
}

/// `hotrun status --ready`: 0 when every app has all its instances online.
pub fn ready(global: &Global, verbose: bool) -> i32 {
    let say = |msg: &str| {
        if verbose {
            logs::say(msg);
        }
    };
    let status = options(global)
        .ok()
        .and_then(|opts| config::find(&opts).ok())
        .ok_or_else(|| "no ecosystem file".to_string())
        .and_then(|(path, _, _)| client::send(&path, &Request::Status).map_err(|e| e.to_string()))
        .and_then(|reply| reply.into_status());
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            say(&e);
            return exit::FAILURE;
        }
    };
    if status.stopping {
        say("not ready: hotrun is stopping");
        return exit::FAILURE;
    }
    let not_ready = status.not_ready();
    if not_ready.is_empty() {
        say("every instance is online");
        exit::OK
    } else {
        say(&format!("not ready: {}", not_ready.join(", ")));
        exit::FAILURE
    }
}

/// A table like `pm2 ls`.
pub fn status_table(status: &Status) -> String {
    let mut rows = vec![[
        "app", "id", "pid", "state", "ready by", "uptime", "restarts", "reloads", "cpu", "memory",
    ]
    .map(String::from)
    .to_vec()];
    let dash = || "-".to_string();
    // A probe column when an app has probes: the last result, liveness over readiness.
    let probed = status
        .apps
        .iter()
        .flat_map(|a| &a.instances)
        .any(|i| i.probe.is_some() || i.liveness.is_some());
    if probed {
        rows[0].push("probe".into());
    }
    for app in &status.apps {
        for inst in &app.instances {
            let mut row = vec![
                app.name.clone(),
                inst.id.to_string(),
                inst.pid.map_or_else(dash, |p| p.to_string()),
                inst.state.as_str().to_string(),
                inst.ready_by.clone().unwrap_or_else(dash),
                inst.uptime_ms.map_or_else(dash, human_duration),
                inst.restarts.to_string(),
                inst.reloads.to_string(),
                inst.cpu_percent.map_or_else(dash, |p| format!("{p:.0}%")),
                inst.memory_bytes.map_or_else(dash, human_bytes),
            ];
            if probed {
                let last = inst.liveness.as_ref().or(inst.probe.as_ref());
                row.push(last.map_or_else(dash, probe_cell));
            }
            rows.push(row);
        }
    }
    let mut out = table(&rows);
    for app in &status.apps {
        if let Some(last) = &app.last_reload {
            let result = match last.result {
                crate::control::protocol::ReloadResult::Ok => "ok",
                crate::control::protocol::ReloadResult::Failed => "failed",
            };
            out.push_str(&format!(
                "{}: {} reload(s); last: {result} by {} at {}\n",
                app.name, app.reloads, last.trigger, last.at,
            ));
        }
    }
    if let Some(u) = &status.upgrade {
        let how = match &u.refused {
            None => format!("upgraded from {} at {}", u.from, u.at),
            Some(why) => format!("upgrade refused at {}: {why}", u.at),
        };
        out.push_str(&format!(
            "hotrun {} (pid {}): {how}\n",
            status.version, status.pid
        ));
    }
    out
}

/// `ok 200 OK at 18:02:11`, `failing 503 Service Unavailable at 18:02:11`.
fn probe_cell(p: &crate::control::protocol::ProbeStatus) -> String {
    let verdict = if p.ok { "ok" } else { "failing" };
    let detail: String = p.detail.chars().take(40).collect();
    let at = p.at.get(11..19).unwrap_or(&p.at);
    format!("{verdict} {detail} at {at}")
}

/// Rows as left-aligned columns two spaces apart, the first row the header.
fn table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.first().map_or(0, |r| r.as_ref().len());
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.as_ref()[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn human_duration(ms: u64) -> String {
    match ms / 1000 {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn human_bytes(b: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    format!("{:.1} MB", b as f64 / MB)
}

/// `hotrun ls`: every running hotrun of this user (from the runtime folders), one line per
/// app: its name, instances online of wanted, reloads, hotrun's pid, the ecosystem file.
pub fn ls() -> i32 {
    let mut rows = vec![["app", "online", "reloads", "hotrun pid", "config"].map(String::from)];
    for socket in crate::runtime_dir::RuntimeDir::all_control_sockets() {
        // A socket nobody answers on is what a killed hotrun left: not listed.
        let Ok(reply) = client::send_to(&socket, &Request::Status) else {
            continue;
        };
        let Ok(status) = reply.into_status() else {
            continue;
        };
        for app in &status.apps {
            let online = app
                .instances
                .iter()
                .filter(|i| i.state == InstanceState::Online);
            rows.push([
                app.name.clone(),
                format!("{}/{}", online.count(), app.instances.len()),
                app.reloads.to_string(),
                status.pid.to_string(),
                status.config.display().to_string(),
            ]);
        }
    }
    if rows.len() == 1 {
        logs::say("no hotrun of this user is running");
        return exit::OK;
    }
    print!("{}", table(&rows));
    exit::OK
}

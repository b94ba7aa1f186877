//! `hotrun status` (a table like `pm2 ls`, or JSON), `status --ready`, and `hotrun ls`
//! (every hotrun of this user).

use serde_json::Value;

use super::{ask, options};
use crate::cli::Global;
use crate::config;
use crate::control::client;
use crate::control::protocol::Request;
use crate::{exit, logs};

/// `hotrun status [--json]`.
pub fn status(global: &Global, json: bool) -> i32 {
    let reply = match ask(global, Request::Status) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let Some(mut status) = reply.status else {
        logs::say(
            &reply
                .error
                .unwrap_or_else(|| "no status in the answer".into()),
        );
        return exit::FAILURE;
    };
    if !global.only.is_empty() {
        if let Some(apps) = status["apps"].as_array_mut() {
            apps.retain(|a| global.only.iter().any(|n| a["name"] == n.as_str()));
        }
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
        .and_then(|reply| reply.status.ok_or_else(|| "no status in the answer".into()));
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            say(&e);
            return exit::FAILURE;
        }
    };
    let empty = vec![];
    let mut not_ready = Vec::new();
    for app in status["apps"].as_array().unwrap_or(&empty) {
        for inst in app["instances"].as_array().unwrap_or(&empty) {
            if inst["state"] != "online" {
                not_ready.push(format!(
                    "{}|{} is {}",
                    app["name"].as_str().unwrap_or("?"),
                    inst["id"],
                    inst["state"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    if not_ready.is_empty() {
        say("every instance is online");
        exit::OK
    } else {
        say(&format!("not ready: {}", not_ready.join(", ")));
        exit::FAILURE
    }
}

/// A table like `pm2 ls`.
pub fn status_table(status: &Value) -> String {
    let mut rows = vec![[
        "app", "id", "pid", "state", "ready by", "uptime", "restarts", "reloads", "cpu", "memory",
    ]
    .map(String::from)
    .to_vec()];
    let empty = vec![];
    for app in status["apps"].as_array().unwrap_or(&empty) {
        let name = app["name"].as_str().unwrap_or("?");
        for inst in app["instances"].as_array().unwrap_or(&empty) {
            let text = |v: &Value| {
                v.as_str()
                    .map(String::from)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            };
            rows.push(vec![
                name.to_string(),
                text(&inst["id"]).unwrap_or_default(),
                text(&inst["pid"]).unwrap_or_else(|| "-".into()),
                text(&inst["state"]).unwrap_or_default(),
                text(&inst["ready_by"]).unwrap_or_else(|| "-".into()),
                inst["uptime_ms"]
                    .as_u64()
                    .map_or("-".into(), human_duration),
                text(&inst["restarts"]).unwrap_or_default(),
                text(&inst["reloads"]).unwrap_or_default(),
                inst["cpu_percent"]
                    .as_f64()
                    .map_or("-".into(), |p| format!("{p:.0}%")),
                inst["memory_bytes"]
                    .as_u64()
                    .map_or("-".into(), human_bytes),
            ]);
        }
    }
    let mut out = table(&rows);
    for app in status["apps"].as_array().unwrap_or(&empty) {
        let reloads = app["reloads"].as_u64().unwrap_or(0);
        let last = &app["last_reload"];
        if !last.is_null() {
            out.push_str(&format!(
                "{}: {reloads} reload(s); last: {} by {} at {}\n",
                app["name"].as_str().unwrap_or("?"),
                last["result"].as_str().unwrap_or("?"),
                last["trigger"].as_str().unwrap_or("?"),
                last["at"].as_str().unwrap_or("?"),
            ));
        }
    }
    out
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
        let Some(status) = reply.status else { continue };
        let empty = vec![];
        for app in status["apps"].as_array().unwrap_or(&empty) {
            let instances = app["instances"].as_array().unwrap_or(&empty);
            let online = instances.iter().filter(|i| i["state"] == "online").count();
            rows.push([
                app["name"].as_str().unwrap_or("?").to_string(),
                format!("{online}/{}", instances.len()),
                app["reloads"].as_u64().unwrap_or(0).to_string(),
                status["pid"].as_u64().map_or("?".into(), |p| p.to_string()),
                status["config"].as_str().unwrap_or("?").to_string(),
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

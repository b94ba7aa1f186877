//! What each command does, between the command line and the library: load the plan and
//! run it, or talk to the running hotrun through its control socket.

use serde_json::Value;

use crate::cli::Global;
use crate::config::{self, LoadOptions};
use crate::control::client;
use crate::control::protocol::Request;
use crate::supervisor::replan::Source;
use crate::supervisor::{self, Mode, RunOptions};
use crate::{exit, logs};

fn options(global: &Global) -> Result<LoadOptions, i32> {
    let cwd = std::env::current_dir().map_err(|e| {
        logs::say(&format!("cannot read the current directory: {e}"));
        exit::CONFIG_NOT_FOUND
    })?;
    Ok(LoadOptions {
        config: global.config.clone(),
        profile: global.env.clone(),
        only: global.only.clone(),
        cwd,
    })
}

/// Loads the plan, printing notes and warnings; on error prints it and gives the exit code.
fn load(global: &Global) -> Result<config::Loaded, i32> {
    let opts = options(global)?;
    match config::load(&opts) {
        Ok(loaded) => {
            for note in &loaded.notes {
                logs::say(note);
            }
            for warning in &loaded.warnings {
                logs::say(&format!("warning: {warning}"));
            }
            Ok(loaded)
        }
        Err(e) => {
            logs::say(&e.to_string());
            Err(e.exit_code())
        }
    }
}

/// `hotrun config`.
pub fn show_config(global: &Global, json: bool, show_secrets: bool) -> i32 {
    let mut loaded = match load(global) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if !show_secrets {
        config::mask_secrets(&mut loaded.plan);
    }
    if json {
        let text =
            serde_json::to_string_pretty(&loaded.plan.to_json()).expect("a plan always serializes");
        println!("{text}");
    } else {
        println!("{}", config::render_human(&loaded.plan).trim_end());
    }
    exit::OK
}

fn run_options(global: &Global, mode: Mode) -> RunOptions {
    let mut opts = RunOptions::new(mode);
    opts.memory_interval = std::time::Duration::from_millis(global.memory_interval);
    // Reloads read the same file again, with the profile chosen now.
    if let Ok(load) = options(global) {
        if let Ok((path, _, _)) = config::find(&load) {
            let mut load = load;
            load.config = Some(path);
            opts.source = Some(Source {
                opts: load,
                watch_all: false,
                instances: None,
            });
        }
    }
    opts
}

/// `hotrun`, `hotrun run`, `hotrun check`.
pub fn run(global: &Global, mode: Mode) -> i32 {
    match load(global) {
        Ok(loaded) => supervisor::run(loaded.plan, run_options(global, mode)),
        Err(code) => code,
    }
}

/// `hotrun watch`: the same runner, watching every app (its `watch` paths, or its cwd)
/// and the ecosystem file itself.
pub fn watch(global: &Global, instances: Option<u32>, poll: bool) -> i32 {
    let mut plan = match load(global) {
        Ok(loaded) => loaded.plan,
        Err(code) => return code,
    };
    let mut opts = run_options(global, Mode::Serve);
    if let Some(source) = opts.source.as_mut() {
        source.watch_all = true;
        source.instances = instances;
        source.adjust(&mut plan);
    }
    opts.console = true;
    opts.poll = poll.then(|| std::time::Duration::from_millis(100));
    logs::say("watch mode: type rs + Enter to reload every app, Ctrl-C to stop");
    supervisor::run(plan, opts)
}

/// Sends a request to the hotrun that runs the ecosystem file the flags name.
fn ask(global: &Global, request: Request) -> Result<client::Reply, i32> {
    let opts = options(global)?;
    let (path, _, _) = config::find(&opts).map_err(|e| {
        logs::say(&e.to_string());
        e.exit_code()
    })?;
    client::send(&path, &request).map_err(|e| {
        logs::say(&e.to_string());
        exit::FAILURE
    })
}

/// Apps named on the command line, plus `--only`.
fn apps(global: &Global, apps: &[String]) -> Vec<String> {
    apps.iter().chain(&global.only).cloned().collect()
}

/// `hotrun reload`, `restart`, `stop`: print the answer; 0 when it is ok.
pub fn control(global: &Global, request: Request) -> i32 {
    match ask(global, request) {
        Err(code) => code,
        Ok(reply) if reply.ok => {
            if let Some(m) = reply.message {
                println!("{m}");
            }
            exit::OK
        }
        Ok(reply) => {
            for line in reply.error.unwrap_or_default().lines() {
                logs::say(line);
            }
            exit::FAILURE
        }
    }
}

pub fn reload(global: &Global, names: &[String], no_wait: bool, dry_run: bool) -> i32 {
    let request = Request::Reload {
        apps: apps(global, names),
        wait: !no_wait,
        dry_run,
    };
    if no_wait || dry_run {
        return control(global, request);
    }
    // The reload's events come first, as they happen; then the answer.
    let Some(mut conn) = connect(global, &request) else {
        return exit::FAILURE;
    };
    let mut line = String::new();
    loop {
        line.clear();
        match std::io::BufRead::read_line(&mut conn, &mut line) {
            Ok(0) | Err(_) => {
                logs::say("lost the connection to hotrun before the reload was done");
                return exit::FAILURE;
            }
            Ok(_) => {}
        }
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if value.get("event").is_some() {
            print_event(&value);
            continue;
        }
        let reply: client::Reply = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(_) => continue,
        };
        return if reply.ok {
            println!("{}", reply.message.unwrap_or_default());
            exit::OK
        } else {
            for l in reply.error.unwrap_or_default().lines() {
                logs::say(l);
            }
            exit::FAILURE
        };
    }
}

/// Opens a connection for a request whose lines come in a stream.
fn connect(
    global: &Global,
    request: &Request,
) -> Option<std::io::BufReader<std::os::unix::net::UnixStream>> {
    let opts = options(global).ok()?;
    let path = match config::find(&opts) {
        Ok((path, _, _)) => path,
        Err(e) => {
            logs::say(&e.to_string());
            return None;
        }
    };
    match client::stream(&path, request) {
        Ok(conn) => Some(conn),
        Err(e) => {
            logs::say(&e.to_string());
            None
        }
    }
}

fn print_event(event: &Value) {
    if logs::json() {
        println!("{event}");
    } else {
        println!("{}", event["message"].as_str().unwrap_or(""));
    }
}

/// `hotrun events`: reload events as they happen, until hotrun stops (or Ctrl-C).
pub fn events(global: &Global) -> i32 {
    let Some(mut conn) = connect(global, &Request::Events) else {
        return exit::FAILURE;
    };
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut conn, &mut line).unwrap_or(0) > 0 {
        if let Ok(value) = serde_json::from_str::<Value>(&line) {
            if value.get("event").is_some() {
                print_event(&value);
            } else if let Some(m) = value["message"].as_str() {
                // The answer: from now on every event comes.
                logs::say(m);
            }
        }
        line.clear();
    }
    exit::OK
}

pub fn restart(global: &Global, names: &[String]) -> i32 {
    let request = Request::Restart {
        apps: apps(global, names),
    };
    control(global, request)
}

/// `hotrun init`: a commented ecosystem.config.js for the current folder.
pub fn init(global: &Global) -> i32 {
    let opts = match options(global) {
        Ok(o) => o,
        Err(code) => return code,
    };
    if let Ok((existing, _, _)) = config::find(&LoadOptions {
        config: None,
        ..opts.clone()
    }) {
        logs::say(&format!(
            "{} already exists; hotrun init never overwrites an ecosystem file",
            existing.display()
        ));
        return exit::FAILURE;
    }
    let target = global
        .config
        .clone()
        .unwrap_or_else(|| opts.cwd.join("ecosystem.config.js"));
    let found = crate::init::inspect(&opts.cwd);
    let write = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, crate::init::render(&found).as_bytes())
        });
    match write {
        Ok(()) => {
            println!(
                "wrote {} (script: {}; {})",
                target.display(),
                found.script,
                found.why
            );
            exit::OK
        }
        Err(e) => {
            logs::say(&format!("cannot write {}: {e}", target.display()));
            exit::FAILURE
        }
    }
}

/// `hotrun logs [APP] [--lines N] [--follow]`: the same prefixes and colours as the runner.
pub fn logs(global: &Global, app: Option<String>, lines: usize, follow: bool) -> i32 {
    let opts = match options(global) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let path = match config::find(&opts) {
        Ok((path, _, _)) => path,
        Err(e) => {
            logs::say(&e.to_string());
            return e.exit_code();
        }
    };
    let request = Request::Logs { app, lines, follow };
    let (reply, mut more) = match client::open(&path, &request) {
        Ok(r) => r,
        Err(e) => {
            logs::say(&e.to_string());
            return exit::FAILURE;
        }
    };
    if !reply.ok {
        logs::say(&reply.error.unwrap_or_default());
        return exit::FAILURE;
    }
    for record in reply.lines.unwrap_or_default() {
        print_record(&record);
    }
    if follow {
        use std::io::BufRead;
        let mut line = String::new();
        while more.read_line(&mut line).unwrap_or(0) > 0 {
            if let Ok(record) = serde_json::from_str::<Value>(&line) {
                print_record(&record);
            }
            line.clear();
        }
    }
    exit::OK
}

fn print_record(record: &Value) {
    use std::io::Write;
    if logs::json() {
        println!("{record}");
        return;
    }
    let stderr = record["stream"] == "stderr";
    let label = record["label"].as_str().unwrap_or("?");
    let index = record["app_index"].as_u64().unwrap_or(0) as usize;
    let line = format!(
        "{} | {}\n",
        logs::styled_label(label, index, stderr),
        record["message"].as_str().unwrap_or("")
    );
    let _ = if stderr {
        std::io::stderr().lock().write_all(line.as_bytes())
    } else {
        std::io::stdout().lock().write_all(line.as_bytes())
    };
}

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
        "app", "id", "pid", "state", "ready by", "uptime", "restarts", "cpu", "memory",
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

/// `hotrun startup systemd [--write]`: the unit for this ecosystem file (see `startup`).
pub fn startup_systemd(global: &Global, write: bool) -> i32 {
    let loaded = match load(global) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let plan = &loaded.plan;
    let longest_stop = plan
        .apps
        .iter()
        .map(|a| a.kill_timeout + a.drain_delay)
        .max()
        .unwrap_or_default();
    let hotrun = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            logs::say(&format!("cannot tell where hotrun's executable is: {e}"));
            return exit::FAILURE;
        }
    };
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    let unit = crate::startup::Unit {
        hotrun,
        config: plan.config.clone(),
        profile: plan.profile.clone(),
        longest_stop,
        user,
        path: std::env::var("PATH").ok(),
    };
    let text = unit.text();
    if !write {
        print!("{text}");
        return exit::OK;
    }
    let name = crate::startup::unit_name(&plan.config);
    let target = std::path::Path::new("/etc/systemd/system").join(&name);
    match std::fs::write(&target, &text) {
        Ok(()) => {
            logs::say(&format!(
                "wrote {}; now: systemctl daemon-reload && systemctl enable --now {name}",
                target.display()
            ));
            exit::OK
        }
        Err(e) => {
            logs::say(&format!(
                "cannot write {}: {e} (run it as root: sudo hotrun startup systemd --write, or print the unit without --write)",
                target.display()
            ));
            exit::FAILURE
        }
    }
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

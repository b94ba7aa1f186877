//! `hotrun reload`, `restart`, `stop` and `events`: requests to the running hotrun, and
//! the reload's events as they come.

use super::{apps, ask, connect};
use crate::cli::Global;
use crate::control::client;
use crate::control::protocol::{ReloadEvent, Request, Response};
use crate::{exit, logs};

/// `hotrun reload`, `restart`, `stop`: print the answer; 0 when it is ok.
pub fn control(global: &Global, request: Request) -> i32 {
    match ask(global, request) {
        Err(code) => code,
        Ok(reply) => answered(reply),
    }
}

/// Prints a reply's line (its error on stderr); the exit code it means.
fn answered(reply: Response) -> i32 {
    match reply {
        Response::Failed(error) => {
            for line in error.lines() {
                logs::say(line);
            }
            exit::FAILURE
        }
        Response::Done(message) => {
            if !message.is_empty() {
                println!("{message}");
            }
            exit::OK
        }
        _ => exit::OK,
    }
}

pub fn reload(
    global: &Global,
    names: &[String],
    no_wait: bool,
    dry_run: bool,
    canary: Option<u64>,
) -> i32 {
    let request = Request::Reload {
        apps: apps(global, names),
        wait: !no_wait,
        dry_run,
        canary,
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
        if let Ok(event) = serde_json::from_str::<ReloadEvent>(&line) {
            print_event(&event, &line);
            continue;
        }
        let reply: client::Reply = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(_) => continue,
        };
        return answered(reply);
    }
}

/// A reload event: its JSON `line` as it came with `--log-format json`, else its message.
fn print_event(event: &ReloadEvent, line: &str) {
    if logs::json() {
        println!("{}", line.trim_end());
    } else {
        println!("{}", event.message);
    }
}

/// `hotrun events`: reload events as they happen, until hotrun stops (or Ctrl-C).
pub fn events(global: &Global) -> i32 {
    let Some(mut conn) = connect(global, &Request::Events) else {
        return exit::FAILURE;
    };
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut conn, &mut line).unwrap_or(0) > 0 {
        if let Ok(event) = serde_json::from_str::<ReloadEvent>(&line) {
            print_event(&event, &line);
        } else if let Ok(Response::Done(m)) = serde_json::from_str::<client::Reply>(&line) {
            // The answer: from now on every event comes.
            logs::say(&m);
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

/// `hotrun upgrade`: the running hotrun execs the new binary, which takes every instance
/// over; waits until it answers again and says how it ended (0: upgraded).
pub fn upgrade(global: &Global, binary: Option<std::path::PathBuf>, refuse_state: u8) -> i32 {
    let before = match ask(global, Request::Status).map(Response::into_status) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            logs::say(&e);
            return exit::FAILURE;
        }
        Err(code) => return code,
    };
    // Asked again and again while the exec runs: quiet about a connection it cut.
    let status = || -> Result<Result<crate::control::protocol::Status, String>, ()> {
        client::send(&before.config, &Request::Status)
            .map(Response::into_status)
            .map_err(drop)
    };
    let binary = binary.map(|b| std::env::current_dir().map_or(b.clone(), |d| d.join(b)));
    match ask(
        global,
        Request::Upgrade {
            binary,
            refuse_state,
        },
    ) {
        Ok(Response::Failed(e)) => {
            for line in e.lines() {
                logs::say(line);
            }
            return exit::FAILURE;
        }
        Ok(Response::Done(m)) => println!("{m}"),
        // The exec may have cut the answer: the status says how it went.
        _ => {}
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(Ok(now)) = status() {
            match now
                .upgrade
                .as_ref()
                .filter(|u| Some(*u) != before.upgrade.as_ref())
            {
                Some(u) if u.ok => {
                    println!(
                        "upgraded from hotrun {} to {} (pid {}): every instance kept",
                        u.from, now.version, now.pid
                    );
                    return exit::OK;
                }
                Some(u) => {
                    logs::say(&format!(
                        "upgrade not done: {}; hotrun {} runs on",
                        u.refused.as_deref().unwrap_or("refused"),
                        now.version
                    ));
                    return exit::FAILURE;
                }
                None => {}
            }
        }
        let socket = crate::runtime_dir::RuntimeDir::of(&before.config).control_socket();
        if !socket.exists() {
            logs::say("upgrade not done: hotrun stopped (its log says why)");
            return exit::FAILURE;
        }
        if std::time::Instant::now() > deadline {
            logs::say("hotrun did not say within 30 s how the upgrade went (see its log)");
            return exit::FAILURE;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

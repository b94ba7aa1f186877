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

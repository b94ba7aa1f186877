//! What each command does, between the command line and the library: load the plan and
//! run it, or talk to the running hotrun through its control socket. One module per
//! group of commands; here what they share (finding the ecosystem file, asking hotrun).

mod control;
mod logs;
mod running;
mod setup;
mod status;

pub use control::{control, events, reload, restart, upgrade};
pub use logs::logs;
pub use running::{run, watch};
pub use setup::{init, show_config, startup_systemd};
pub use status::{ls, ready, status};

use crate::cli::Global;
use crate::config::{self, LoadOptions};
use crate::control::client;
use crate::control::protocol::Request;
use crate::{exit, logs as say_to};

pub(super) fn options(global: &Global) -> Result<LoadOptions, i32> {
    let cwd = std::env::current_dir().map_err(|e| {
        say_to::say(&format!("cannot read the current directory: {e}"));
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
pub(super) fn load(global: &Global) -> Result<config::Loaded, i32> {
    let opts = options(global)?;
    match config::load(&opts) {
        Ok(loaded) => {
            for note in &loaded.notes {
                say_to::say(note);
            }
            for warning in &loaded.warnings {
                say_to::say(&format!("warning: {warning}"));
            }
            Ok(loaded)
        }
        Err(e) => {
            say_to::say(&e.to_string());
            Err(e.exit_code())
        }
    }
}

/// Sends a request to the hotrun that runs the ecosystem file the flags name.
pub(super) fn ask(global: &Global, request: Request) -> Result<client::Reply, i32> {
    let opts = options(global)?;
    let (path, _, _) = config::find(&opts).map_err(|e| {
        say_to::say(&e.to_string());
        e.exit_code()
    })?;
    client::send(&path, &request).map_err(|e| {
        say_to::say(&e.to_string());
        exit::FAILURE
    })
}

/// Opens a connection for a request whose lines come in a stream.
pub(super) fn connect(
    global: &Global,
    request: &Request,
) -> Option<std::io::BufReader<std::os::unix::net::UnixStream>> {
    let opts = options(global).ok()?;
    let path = match config::find(&opts) {
        Ok((path, _, _)) => path,
        Err(e) => {
            say_to::say(&e.to_string());
            return None;
        }
    };
    match client::stream(&path, request) {
        Ok(conn) => Some(conn),
        Err(e) => {
            say_to::say(&e.to_string());
            None
        }
    }
}

/// Apps named on the command line, plus `--only`.
pub(super) fn apps(global: &Global, apps: &[String]) -> Vec<String> {
    apps.iter().chain(&global.only).cloned().collect()
}

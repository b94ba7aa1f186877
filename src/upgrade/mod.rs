//! Upgrading hotrun itself without restarting an app or closing a socket (`hotrun
//! upgrade`, SIGUSR2): the running hotrun checks the new binary, writes its state into a
//! sealed memfd (`state`) and execs the new binary in its own process (`exec`), which
//! adopts every instance, socket and pipe (`supervisor::upgrade`). A state the new binary
//! refuses sends it back to the old binary, through a descriptor kept of it.

pub mod exec;
pub mod state;

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use state::{Refusal, State, FALLBACK_ENV, FROM_ENV, STATE_ENV};

/// What this process got from an upgrade's old hotrun, if it was exec'd by one.
pub enum Incoming {
    /// A fresh start.
    Nothing,
    /// A state to adopt, the old binary's descriptor, and on a fallback why the new
    /// binary refused it (this binary is the old one, taking its own state back).
    Take {
        state: State,
        state_fd: OwnedFd,
        from: OwnedFd,
        refused: Option<String>,
    },
    /// A state this binary does not take: back to the old binary with it (`again`: this
    /// is the old binary already; no exec is left to try).
    Refuse {
        why: Refusal,
        state_fd: RawFd,
        from: OwnedFd,
        again: bool,
    },
}

/// What `receive` read, for `incoming`.
static RECEIVED: std::sync::Mutex<Option<Incoming>> = std::sync::Mutex::new(None);

/// Reads what an upgrade handed to this process, first thing in `main`: before anything
/// (a JS ecosystem file's `node`) is started that would inherit the handed-over
/// descriptors or see the variables naming them.
pub fn receive() {
    let got = read_incoming();
    if !matches!(got, Incoming::Nothing) {
        *RECEIVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(got);
    }
}

/// What an upgrade handed to this process (`receive` read it), taken once.
pub fn incoming() -> Incoming {
    let taken = RECEIVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.unwrap_or_else(read_incoming)
}

/// Reads what an upgrade handed to this process (its environment names the
/// descriptors), and takes the names out of the environment (instances must not see
/// them). Every descriptor the state names is close-on-exec again once read.
fn read_incoming() -> Incoming {
    let fd_of = |key: &str| -> Option<RawFd> { std::env::var(key).ok()?.parse().ok() };
    let (Some(state_fd), Some(from_fd)) = (fd_of(STATE_ENV), fd_of(FROM_ENV)) else {
        return Incoming::Nothing;
    };
    let refused = std::env::var(FALLBACK_ENV).ok();
    for key in [STATE_ENV, FROM_ENV, FALLBACK_ENV] {
        std::env::remove_var(key);
    }
    // SAFETY: the old hotrun kept these two descriptors open across the exec for this
    // process and named them in its environment; nothing else here owns them.
    let (state_file, from) = unsafe {
        (
            OwnedFd::from_raw_fd(state_fd),
            OwnedFd::from_raw_fd(from_fd),
        )
    };
    let _ = exec::close_on_exec(&[from_fd], true);
    let parsed = state::read_fd(std::os::fd::AsFd::as_fd(&state_file))
        .map_err(|e| Refusal::Unreadable(e.to_string()))
        .and_then(|bytes| state::parse(&bytes, refused.is_some()));
    match parsed {
        Ok(state) => {
            let _ = exec::close_on_exec(&state.fds(), true);
            let _ = exec::close_on_exec(&[state_fd], true);
            Incoming::Take {
                state,
                state_fd: state_file,
                from,
                refused,
            }
        }
        Err(why) => Incoming::Refuse {
            why,
            state_fd: std::os::fd::IntoRawFd::into_raw_fd(state_file),
            from,
            again: refused.is_some(),
        },
    }
}

/// The last resort when neither binary takes the state: every child of this process
/// (the instances, each leading its group) is asked to stop with SIGINT, as a stop does,
/// and its group SIGKILLed after `kill_timeout`; the guard (which ignores stop signals)
/// goes when hotrun exits. Without a state hotrun knows its children only from /proc.
pub fn stop_children(kill_timeout: Duration) {
    use nix::sys::signal::Signal;
    let me = std::process::id() as i32;
    let leaders: Vec<i32> = children_of(me)
        .into_iter()
        .filter(|&pid| !is_guard(pid))
        .collect();
    for &pid in &leaders {
        crate::process::group::signal(pid, Signal::SIGINT);
    }
    let deadline = std::time::Instant::now() + kill_timeout;
    loop {
        crate::process::reaper::reap();
        let left: Vec<i32> = leaders
            .iter()
            .copied()
            .filter(|&g| crate::process::group::alive(g))
            .collect();
        if left.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            for g in left {
                crate::process::group::signal(g, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
            crate::process::reaper::reap();
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids whose parent is `ppid`, from /proc.
fn children_of(ppid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // The fields after the command's closing parenthesis: state, ppid, ...
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(ppid)
            })
        })
        .collect()
}

fn is_guard(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == b"__guard"))
}

/// Whether the plan read again runs what the state holds: each app of the state in the
/// plan, with as many instances.
pub fn fits(state: &State, plan: &crate::plan::Plan) -> Result<(), String> {
    for app in &state.apps {
        let Some(p) = plan.apps.iter().find(|p| p.name == app.name) else {
            return Err(format!(
                "the ecosystem file has no app {} any more",
                app.name
            ));
        };
        if p.instances as usize != app.slots.len() {
            return Err(format!(
                "{}: {} instances run, the ecosystem file says {}",
                app.name,
                app.slots.len(),
                p.instances
            ));
        }
    }
    Ok(())
}

/// Checks that `binary` runs (`--version`, within 5 s): its version line.
pub fn check_binary(binary: &Path) -> Result<String, String> {
    let shown = binary.display();
    let mut child = std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{shown} does not run: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} --version did not answer within 5 s"));
            }
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    let version = out.lines().next().unwrap_or_default().trim().to_string();
    if !status.success() || !version.starts_with("hotrun ") {
        return Err(format!(
            "{shown} --version printed {version:?} ({status}): not a hotrun binary"
        ));
    }
    // A hotrun older than upgrades does not know the state: it would start afresh and
    // find its own control socket taken.
    let reads = std::process::Command::new(binary)
        .arg("__state-format")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        });
    match reads {
        Some(format) if format >= state::FORMAT => Ok(version),
        Some(format) => Err(format!(
            "{version} ({shown}) reads upgrade states of format {format}, this hotrun writes {}: it cannot take over",
            state::FORMAT
        )),
        None => Err(format!(
            "{version} ({shown}) cannot take over a running hotrun (it has no upgrade)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_binary_that_says_it_is_hotrun_is_taken() {
        let table = [
            ("/bin/true", "not a hotrun binary"),
            ("/nonexistent/hotrun", "does not run"),
        ];
        for (binary, want) in table {
            let err = check_binary(Path::new(binary)).unwrap_err();
            assert!(err.contains(want), "{binary}: {err}");
        }
    }
}

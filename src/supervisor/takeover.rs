//! The new image's side of an upgrade, before the supervisor exists: what the old
//! hotrun handed over is read (`received`), refused back to the old binary
//! (`fall_back`), or, when neither binary takes it, every instance is stopped; the control
//! socket, the HTTP endpoint, the guard and the listening sockets are taken from their
//! descriptors.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::logs;
use crate::plan::Plan;
use crate::process::guard::Guard;
use crate::runtime_dir::RuntimeDir;
use crate::sockets::Listeners;
use crate::upgrade;

/// What an upgrade's old hotrun handed to this process: nothing (a fresh start), or a
/// state to adopt with, on a fallback, why the new binary refused it. `Err` is the exit
/// code when hotrun cannot go on (it went back to the old binary, or stopped).
pub(super) fn received(
    plan: &Plan,
) -> Result<Option<(upgrade::state::State, Option<String>)>, i32> {
    let kill_timeout = plan
        .apps
        .iter()
        .map(|a| a.kill_timeout)
        .max()
        .unwrap_or_default();
    match upgrade::incoming() {
        upgrade::Incoming::Nothing => Ok(None),
        upgrade::Incoming::Refuse {
            why, again: true, ..
        } => {
            logs::say(&format!(
                "the hotrun that ran before refuses its own state too ({why}): stopping every instance"
            ));
            Err(stop_without_state(plan, kill_timeout))
        }
        upgrade::Incoming::Refuse {
            why,
            state_fd,
            from,
            ..
        } => {
            let held = (state_fd, &from);
            Err(fall_back(&why.to_string(), held, &[], plan, kill_timeout))
        }
        upgrade::Incoming::Take {
            state,
            state_fd,
            from,
            refused,
        } => {
            if let Err(why) = upgrade::fits(&state, plan) {
                if refused.is_some() {
                    // This is the old binary taking its state back: no exec is left to try.
                    logs::say(&format!(
                        "the hotrun that ran before cannot take its own state back ({why}): stopping every instance"
                    ));
                    return Err(stop_without_state(plan, kill_timeout));
                }
                let held = (state_fd.as_raw_fd(), &from);
                return Err(fall_back(&why, held, &state.fds(), plan, kill_timeout));
            }
            Ok(Some((state, refused)))
        }
    }
}

/// The control socket an upgrade's old hotrun listened on.
pub(super) fn control(fd: RawFd) -> std::io::Result<tokio::net::UnixListener> {
    // SAFETY: the state names it; the old hotrun kept it open across the exec.
    let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    l.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(l)
}

/// The HTTP endpoint an upgrade's old hotrun listened on.
pub(super) fn http(fd: RawFd) -> std::io::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    // SAFETY: as `control`.
    let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    l.set_nonblocking(true)?;
    let addr = l.local_addr()?;
    Ok((tokio::net::TcpListener::from_std(l)?, addr))
}

/// What the old hotrun's state holds beside the instances: the guard and the sockets.
pub(super) fn guard_and_sockets(state: &upgrade::state::State) -> (Option<Guard>, Listeners) {
    // SAFETY (both): the state names them; the old hotrun kept them open for us.
    let guard = state
        .guard
        .as_ref()
        .map(|g| Guard::adopt(g.pid, unsafe { OwnedFd::from_raw_fd(g.fd) }));
    let groups = state
        .groups
        .iter()
        .map(|g| {
            let members = g
                .members
                .iter()
                .map(|(m, fd)| (m.clone(), unsafe { OwnedFd::from_raw_fd(*fd) }))
                .collect();
            (g.addr, members)
        })
        .collect();
    (guard, Listeners::adopt(groups))
}

/// The new binary does not take the state: back to the old one with it. Returns only
/// when that exec failed too; then every instance is stopped as a stop does, and
/// hotrun exits (`kill_timeout`: the longest of the plan's).
fn fall_back(
    why: &str,
    (state_fd, from): (RawFd, &OwnedFd),
    fds: &[RawFd],
    plan: &Plan,
    kill_timeout: Duration,
) -> i32 {
    logs::say(&format!(
        "upgrade refused by hotrun {}: {why}; going back to the hotrun that ran before",
        env!("CARGO_PKG_VERSION")
    ));
    logs::stdio::flush_for(Duration::from_secs(1));
    let mut keep = fds.to_vec();
    keep.extend([state_fd, from.as_raw_fd()]);
    let _ = upgrade::exec::close_on_exec(&keep, false);
    let err = upgrade::exec::exec(
        upgrade::exec::Target::Fd(from.as_fd()),
        state_fd,
        from.as_raw_fd(),
        Some(why),
    );
    logs::say(&format!(
        "cannot go back to the hotrun that ran before ({err}): stopping every instance"
    ));
    stop_without_state(plan, kill_timeout)
}

/// Neither binary takes the state: every instance is stopped as a stop does, the control
/// socket's file removed, and hotrun exits 1.
fn stop_without_state(plan: &Plan, kill_timeout: Duration) -> i32 {
    upgrade::stop_children(kill_timeout);
    let _ = std::fs::remove_file(RuntimeDir::of(&plan.config).control_socket());
    logs::say("stopped");
    crate::exit::FAILURE
}

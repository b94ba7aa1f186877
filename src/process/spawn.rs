//! Starting one instance: exec'd directly (no shell unless the plan's command is PM2's
//! `sh -c` case), in its own process group, with its cwd and environment, its output on
//! pipes, and a Node IPC channel on fd 3 (`NODE_CHANNEL_FD`), so that
//! `process.send('ready')` works unchanged.
//!
//! Must be called from the thread that lives as long as hotrun (the runtime's main
//! thread): the parent-death signal fires when the *thread* that forked exits.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Command, Stdio};

use command_fds::{CommandFdExt, FdMapping};
use nix::sys::signal::Signal;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::plan::AppPlan;

/// The fd number of the IPC channel in the instance.
pub const IPC_FD: i32 = 3;

/// Which instance to start.
pub struct SpawnRequest<'a> {
    pub app: &'a AppPlan,
    /// The instance id within the app (`NODE_APP_INSTANCE`).
    pub id: u32,
    /// PM2's global id (`pm_id`).
    pub pm_id: u32,
}

/// A started instance: its pid (also its process group id) and the parent's ends of its
/// pipes and IPC channel.
pub struct Spawned {
    pub pid: i32,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
    pub ipc: UnixStream,
}

/// Starts the instance. The returned pid leads a new process group.
pub fn spawn(req: &SpawnRequest<'_>) -> io::Result<Spawned> {
    let app = req.app;
    let (ours, theirs): (OwnedFd, OwnedFd) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;

    let mut cmd = Command::new(&app.command.program);
    cmd.args(&app.command.args)
        .current_dir(&app.cwd)
        .envs(&app.env)
        .env(&app.instance_var, req.id.to_string())
        .env("pm_id", req.pm_id.to_string())
        .env("name", &app.name)
        .env("NODE_CHANNEL_FD", IPC_FD.to_string())
        .env("NODE_CHANNEL_SERIALIZATION_MODE", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: theirs,
        child_fd: IPC_FD,
    }])
    .map_err(|e| io::Error::other(e.to_string()))?;

    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (prctl, getppid, raise) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // If hotrun dies, the instance gets SIGKILL (the guard then kills the rest of
            // its group). If hotrun died before this line ran, do what the signal would do.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            if nix::unistd::getppid() != parent {
                let _ = nix::sys::signal::raise(Signal::SIGKILL);
            }
            Ok(())
        });
    }

    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // `child` is dropped without waiting: the reaper collects every exit.
    Ok(Spawned {
        pid: child.id() as i32,
        stdout,
        stderr,
        ipc: UnixStream::from(ours),
    })
}

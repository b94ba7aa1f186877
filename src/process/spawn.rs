//! Starting one instance: exec'd directly (no shell unless the plan's command is PM2's
//! `sh -c` case), in its own process group, with its cwd and environment, its output on
//! pipes, the listening sockets hotrun shares with it as fds 3.., and a Node IPC channel
//! on the next fd (`NODE_CHANNEL_FD`), so that `process.send('ready')` works unchanged.
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

/// The first fd number of the sockets passed to an instance (systemd's SD_LISTEN_FDS_START).
pub const FIRST_FD: i32 = 3;

/// Which instance to start, and what hotrun hands it.
pub struct SpawnRequest<'a> {
    pub app: &'a AppPlan,
    /// The instance id within the app (`NODE_APP_INSTANCE`).
    pub id: u32,
    /// PM2's global id (`pm_id`).
    pub pm_id: u32,
    /// Variables set after the app's own (hotrun's: NOTIFY_SOCKET, NODE_OPTIONS, ...).
    pub env: Vec<(String, String)>,
    /// Listening sockets, given to the instance as fds 3, 4, ... in this order.
    pub fds: Vec<OwnedFd>,
    /// Set `LISTEN_PID` to the instance's own pid (systemd socket activation; the
    /// caller sets LISTEN_FDS and LISTEN_FDNAMES in `env`), through `hotrun __exec`.
    pub listen_pid: bool,
}

/// `hotrun __exec PROGRAM ARGS...`: sets `LISTEN_PID` to this process's own pid, then
/// execs PROGRAM. Instances that take `listen` sockets start through this step, because
/// systemd's `LISTEN_PID` must be the instance's pid, known only after fork. The pid,
/// process group, fds and parent-death signal all survive the exec.
pub fn exec_with_listen_pid(mut args: impl Iterator<Item = std::ffi::OsString>) -> i32 {
    let Some(program) = args.next() else {
        crate::logs::say("__exec needs a program");
        return crate::exit::USAGE;
    };
    let err = Command::new(&program)
        .args(args)
        .env("LISTEN_PID", std::process::id().to_string())
        .exec();
    crate::logs::say(&format!(
        "cannot start {}: {err}",
        program.to_string_lossy()
    ));
    127
}

/// A started instance: its pid (also its process group id) and the parent's ends of its
/// pipes and IPC channel.
pub struct Spawned {
    pub pid: i32,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
    pub ipc: UnixStream,
}

/// The child gets SIGKILL when hotrun dies (the guard then kills the rest of its group);
/// if hotrun died before the hook ran, it does what the signal would have done. It also
/// starts with every signal at its default action, as systemd and Node's child_process
/// start processes: signals ignored where hotrun was started (`nohup`, `cmd &` in a script
/// ignores SIGINT and SIGQUIT) must not be ignored by the apps.
fn die_with_hotrun(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: only async-signal-safe calls (sigaction, prctl, getppid, raise) run between
    // fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Every signal, realtime ones and those libc keeps for itself (its wrappers
            // refuse 32 and 33), straight to the kernel: an all-zero `struct sigaction` is
            // SIG_DFL with no flags and an empty mask on every architecture. SIGKILL and
            // SIGSTOP refuse, harmlessly.
            let dfl = [0u64; 4];
            for sig in 1..=64 {
                nix::libc::syscall(
                    nix::libc::SYS_rt_sigaction,
                    sig,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                );
            }
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            if nix::unistd::getppid() != parent {
                let _ = nix::sys::signal::raise(Signal::SIGKILL);
            }
            Ok(())
        });
    }
}

/// A started build: its pid (also its process group id) and its output pipes.
pub struct SpawnedBuild {
    pub pid: i32,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// Starts an app's `build` command with `sh -c` in the app's cwd, with its environment,
/// in a process group of its own (so a timeout kills all of it).
pub fn spawn_build(app: &AppPlan, command: &str) -> io::Result<SpawnedBuild> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&app.cwd)
        .envs(&app.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    die_with_hotrun(&mut cmd);
    let mut child = cmd.spawn()?;
    Ok(SpawnedBuild {
        pid: child.id() as i32,
        stdout: child.stdout.take().expect("piped"),
        stderr: child.stderr.take().expect("piped"),
    })
}

/// Starts an `exec` probe of the instance `pid` (slot `id`): `sh -c command` in the
/// app's cwd with its environment and `HOTRUN_PROBE_PID`, `HOTRUN_PROBE_INSTANCE`, output
/// to /dev/null (a chatty `curl` must not fail on a closed pipe), in a group of its own
/// (a timeout kills all of it). Its exit is collected by the reaper.
pub fn spawn_probe(app: &AppPlan, command: &str, pid: i32, id: u32) -> io::Result<i32> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&app.cwd)
        .envs(&app.env)
        .env("HOTRUN_PROBE_PID", pid.to_string())
        .env("HOTRUN_PROBE_INSTANCE", id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    die_with_hotrun(&mut cmd);
    Ok(cmd.spawn()?.id() as i32)
}

/// PM2's `increment_var`: the variable's value (from the app's env, else hotrun's own; 0 when
/// unset or not a number, as JavaScript's `Number(x) || 0`) plus the instance id.
fn incremented(app: &AppPlan, var: &str, id: u32) -> String {
    let written = app
        .env
        .get(var)
        .cloned()
        .or_else(|| std::env::var(var).ok());
    let base = written
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite())
        .unwrap_or(0.0);
    let value = base + f64::from(id);
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
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

    let ipc_fd = FIRST_FD + req.fds.len() as i32;
    let mut cmd = if req.listen_pid {
        let mut trampoline = Command::new(std::env::current_exe()?);
        trampoline.arg("__exec").arg(&app.command.program);
        trampoline
    } else {
        Command::new(&app.command.program)
    };
    cmd.args(&app.command.args)
        .current_dir(&app.cwd)
        .envs(&app.env)
        .env(&app.instance_var, req.id.to_string())
        .envs(
            app.increment_var
                .as_ref()
                .map(|var| (var, incremented(app, var, req.id))),
        )
        .env("pm_id", req.pm_id.to_string())
        .env("name", &app.name)
        .env("NODE_CHANNEL_FD", ipc_fd.to_string())
        .env("NODE_CHANNEL_SERIALIZATION_MODE", "json")
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut mappings: Vec<FdMapping> = Vec::with_capacity(req.fds.len() + 1);
    for (i, fd) in req.fds.iter().enumerate() {
        mappings.push(FdMapping {
            parent_fd: fd.try_clone()?,
            child_fd: FIRST_FD + i as i32,
        });
    }
    mappings.push(FdMapping {
        parent_fd: theirs,
        child_fd: ipc_fd,
    });
    cmd.fd_mappings(mappings)
        .map_err(|e| io::Error::other(e.to_string()))?;

    die_with_hotrun(&mut cmd);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_var_adds_the_instance_id_to_the_written_value_as_pm2_does() {
        let mut app = crate::supervisor::tests_support::app();
        let table = [
            (Some("4000"), 0, "4000"),
            (Some("4000"), 2, "4002"),
            (Some(" 8080 "), 1, "8081"),
            (Some("abc"), 3, "3"),
            (Some(""), 1, "1"),
            (None, 4, "4"),
            (Some("1.5"), 1, "2.5"),
        ];
        for (written, id, want) in table {
            app.env.clear();
            if let Some(w) = written {
                app.env.insert("HOTRUN_TEST_INCR".into(), w.into());
            }
            assert_eq!(
                incremented(&app, "HOTRUN_TEST_INCR", id),
                want,
                "{written:?} + {id}"
            );
        }
    }
}

//! The one place that reaps children. hotrun is a child subreaper (and may be PID 1 in a
//! container), so orphans of its instances are handed to it; `waitpid(-1)` collects every
//! exit, known instance or not. Nothing else in hotrun waits on a child.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(Signal),
}

impl Exit {
    /// The code a shell would report: the exit code, or 128 + the signal number.
    pub fn as_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s as i32,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {}", s.as_str()),
        }
    }
}

/// Makes orphaned descendants reparent to hotrun instead of init, so they are reaped here
/// and stay visible in their process group until they are.
pub fn become_subreaper() {
    // Not fatal: without it orphans go to init, which reaps them too.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Collects every child that has exited, without blocking.
pub fn reap() -> Vec<(i32, Exit)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw(), Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => out.push((pid.as_raw(), Exit::Signal(sig))),
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: no children left
        }
    }
    out
}

//! The exec itself: the process id stays, so every instance stays hotrun's child, and
//! every descriptor not marked close-on-exec survives. The stop and child signals are
//! blocked across it (pending, not lost: the new image answers them once its handlers
//! are in place), and the new image finds the state's memfd and a descriptor of the old
//! binary (to fall back to) in its environment.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{SigSet, Signal};

use super::state::{FALLBACK_ENV, FROM_ENV, STATE_ENV};

/// The signals held across the exec.
fn held() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        Signal::SIGUSR2,
        Signal::SIGQUIT,
    ] {
        set.add(sig);
    }
    set
}

/// Holds the signals (before the exec).
pub fn block_signals() {
    let _ = held().thread_block();
}

/// Lets them in again (in the new image, once its handlers are installed).
pub fn unblock_signals() {
    let _ = held().thread_unblock();
}

/// Sets or clears close-on-exec on `fds` (cleared: they survive the exec).
pub fn close_on_exec(fds: &[RawFd], on: bool) -> io::Result<()> {
    let flag = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    let mut first_error = None;
    for &fd in fds {
        // SAFETY: the numbers are descriptors this process holds open (the state's).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Err(e) = fcntl(fd, FcntlArg::F_SETFD(flag)) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), |e| Err(e.into()))
}

/// Which binary to exec.
pub enum Target<'a> {
    /// A path (`--binary`, or this binary's own path: a file replaced on disk is the new
    /// version).
    Path(&'a Path),
    /// An open descriptor of a binary (the fallback to the old one).
    Fd(BorrowedFd<'a>),
}

/// Execs `target` with this process's arguments and environment, plus the state's
/// memfd, the old binary's descriptor and, on a fallback, its reason. Returns only when
/// the exec failed.
pub fn exec(target: Target<'_>, state: RawFd, from: RawFd, fallback: Option<&str>) -> io::Error {
    let args: Vec<CString> = std::env::args_os().filter_map(|a| cstring(&a)).collect();
    let ours = [STATE_ENV, FROM_ENV, FALLBACK_ENV];
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !ours.iter().any(|o| k == o))
        .filter_map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect();
    env.extend(CString::new(format!("{STATE_ENV}={state}")));
    env.extend(CString::new(format!("{FROM_ENV}={from}")));
    if let Some(why) = fallback {
        env.extend(CString::new(format!("{FALLBACK_ENV}={why}")));
    }
    let result = match target {
        Target::Path(path) => match CString::new(path.as_os_str().as_bytes()) {
            Ok(p) => nix::unistd::execve(&p, &args, &env).map(drop),
            Err(_) => return io::Error::other("the binary's path holds a NUL byte"),
        },
        Target::Fd(fd) => nix::unistd::fexecve(fd, &args, &env).map(drop),
    };
    match result {
        Err(e) => io::Error::from(e),
        Ok(()) => io::Error::other("exec returned"),
    }
}

fn cstring(s: &OsString) -> Option<CString> {
    CString::new(s.as_bytes()).ok()
}

/// A descriptor of the running binary (close-on-exec until an upgrade keeps it).
pub fn own_binary() -> io::Result<std::fs::File> {
    std::fs::File::open("/proc/self/exe")
}

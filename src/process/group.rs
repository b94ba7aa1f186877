//! Signals to whole process groups: every instance leads its own group, so a stop signal
//! reaches the instance and everything it started (`npm start` and its `node`).

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Sends `sig` to the group led by `pgid`. A group that is already gone is not an error.
pub fn signal(pgid: i32, sig: Signal) {
    match killpg(Pid::from_raw(pgid), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        // EPERM: a member changed its uid; nothing hotrun can do about it.
        Err(_) => {}
    }
}

/// True while any process (zombies included) is still in the group `pgid`.
pub fn alive(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

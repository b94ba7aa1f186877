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

/// The processes of the group `pgid`, from /proc.
pub fn members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| crate::memory::pgrp_of(&s))
                == Some(pgid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    #[test]
    fn a_group_lists_its_processes() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let members = super::members(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(members, vec![pid]);
    }
}

//! The guard: a tiny helper process (`hotrun __guard`) that outlives hotrun only to kill
//! what hotrun leaves behind if it is killed with SIGKILL.
//!
//! Each instance gets SIGKILL from the kernel when hotrun dies (parent-death signal), but
//! what the instance started (npm's `node`, a shell's children) would survive. hotrun
//! tells the guard over a pipe which process groups exist (`+PGID`, `-PGID` lines) and its
//! control socket (`@PATH`); when the pipe reaches end-of-file (hotrun is gone, however it
//! ended), the guard sends SIGKILL to every group still listed and to every process that
//! carries hotrun's marker (descendants that left their group, see `tree`), and exits.
//! After a clean stop the list is empty and no process is marked.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};

use nix::sys::signal::{signal, SigHandler, Signal};

use super::{group, tree};

/// hotrun's end of the pipe to the guard.
pub struct Guard {
    pipe: Option<ChildStdin>,
    pub pid: i32,
}

impl Guard {
    /// Starts `hotrun __guard` from the running executable.
    pub fn start() -> io::Result<Guard> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg("__guard")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own group: a Ctrl-C on the terminal must not kill the guard first.
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Guard {
            pipe,
            pid: child.id() as i32,
        })
    }

    /// The guard an upgrade's old hotrun started: its pid and hotrun's end of its pipe.
    pub fn adopt(pid: i32, pipe: std::os::fd::OwnedFd) -> Guard {
        Guard {
            pipe: Some(ChildStdin::from(pipe)),
            pid,
        }
    }

    /// hotrun's end of the pipe, for an upgrade to hand on.
    pub fn pipe_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.pipe.as_ref().map(|p| p.as_raw_fd())
    }

    /// The control socket whose marker the instances' descendants carry.
    pub fn mark(&mut self, control_socket: &std::path::Path) {
        self.send(&format!("@{}\n", control_socket.display()));
    }

    /// A new instance group exists.
    pub fn add(&mut self, pgid: i32) {
        self.send(&format!("+{pgid}\n"));
    }

    /// An instance group is gone.
    pub fn remove(&mut self, pgid: i32) {
        self.send(&format!("-{pgid}\n"));
    }

    fn send(&mut self, line: &str) {
        if let Some(pipe) = self.pipe.as_mut() {
            if pipe.write_all(line.as_bytes()).is_err() {
                // The guard died; hotrun goes on without it.
                self.pipe = None;
            }
        }
    }
}

/// The guard's main: returns when hotrun is gone and its leftovers are killed.
pub fn run() -> i32 {
    // The terminal's or a container runtime's signals are for hotrun, not for the guard.
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        // SAFETY: setting a signal to be ignored installs no handler code.
        unsafe {
            let _ = signal(sig, SigHandler::SigIgn);
        }
    }
    let mut groups = BTreeSet::new();
    let mut control = None;
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if let Some(path) = line.strip_prefix('@') {
            control = Some(std::path::PathBuf::from(path));
            continue;
        }
        let (op, num) = line.split_at(line.len().min(1));
        match (op, num.parse::<i32>()) {
            ("+", Ok(pgid)) if pgid > 1 => {
                groups.insert(pgid);
            }
            ("-", Ok(pgid)) => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    for pgid in groups {
        group::signal(pgid, Signal::SIGKILL);
    }
    if let Some(control) = control {
        tree::signal(&tree::Index::scan(&control).all(), Signal::SIGKILL);
    }
    0
}

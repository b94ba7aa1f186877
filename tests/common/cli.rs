//! Running `hotrun` as a one-shot command (`hotrun config ...`) and reading what it said.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::HOTRUN;

/// What one run of the binary printed, and its exit code.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The first stderr line, without the `hotrun: ` prefix.
    pub fn first(&self) -> &str {
        let line = self.stderr.lines().next().unwrap_or("");
        line.strip_prefix("hotrun: ").unwrap_or(line)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// `apps` of the JSON plan (the run must have succeeded).
    pub fn apps(&self) -> Vec<Value> {
        assert_eq!(self.code, 0, "hotrun failed:\n{}", self.stderr);
        self.json()["apps"].as_array().cloned().unwrap()
    }
}

/// Runs `hotrun ARGS` in `dir` with extra environment (and node from PATH).
pub fn hotrun_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(HOTRUN);
    cmd.args(args).current_dir(dir).env_remove("HOTRUN_NODE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run hotrun");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn hotrun(dir: &Path, args: &[&str]) -> Run {
    hotrun_env(dir, args, &[])
}

pub fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

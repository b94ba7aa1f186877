//! `hotrun startup systemd`: the unit that runs this ecosystem file at boot, instead of
//! PM2's `pm2 startup` + `pm2 save` (whose saved process list goes stale: PM2 #5297,
//! #5474). The unit runs the file itself, so what boots is what the file says. Pure text.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the unit is made of.
#[derive(Debug, Clone)]
pub struct Unit {
    /// hotrun's own executable.
    pub hotrun: PathBuf,
    /// The ecosystem file (absolute).
    pub config: PathBuf,
    /// `--env NAME`, when given.
    pub profile: Option<String>,
    /// The longest stop of any app: kill_timeout plus drain_delay.
    pub longest_stop: Duration,
    /// The user to run as (the one who ran the command).
    pub user: Option<String>,
    /// PATH to start with (node and the apps' tools are found as in the shell).
    pub path: Option<String>,
}

/// The unit's file name: `hotrun-<folder of the ecosystem file>.service`, with what systemd
/// does not take in a unit name replaced by `-`.
pub fn unit_name(config: &Path) -> String {
    let folder = config
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "app".into());
    let clean: String = folder
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("hotrun-{clean}.service")
}

/// A value inside a unit line: `%` is systemd's specifier character.
fn escaped(s: &str) -> String {
    s.replace('%', "%%")
}

/// A word of `ExecStart=`, quoted when it must be.
fn word(s: &str) -> String {
    let s = escaped(s);
    if s.is_empty() || s.contains([' ', '\t', '"', '\'', '\\', ';', '$']) {
        format!(
            "\"{}\"",
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "$$")
        )
    } else {
        s
    }
}

impl Unit {
    /// The unit file's text.
    pub fn text(&self) -> String {
        let folder = self.config.parent().unwrap_or(Path::new("/"));
        let mut exec = vec![
            word(&self.hotrun.display().to_string()),
            "--config".into(),
            word(&self.config.display().to_string()),
        ];
        if let Some(p) = &self.profile {
            exec.push("--env".into());
            exec.push(word(p));
        }
        // Past the longest graceful stop, systemd's SIGKILL may come: 10 s more.
        let stop = self.longest_stop.as_secs_f64().ceil() as u64 + 10;
        let mut out = String::new();
        let mut line = |s: &str| {
            out.push_str(s);
            out.push('\n');
        };
        line("# Written by `hotrun startup systemd`. Install: sudo hotrun startup systemd --write");
        line("[Unit]");
        line(&format!(
            "Description=hotrun: {}",
            escaped(&self.config.display().to_string())
        ));
        line("After=network-online.target");
        line("Wants=network-online.target");
        line("");
        line("[Service]");
        line("Type=simple");
        if let Some(user) = &self.user {
            line(&format!("User={}", escaped(user)));
        }
        line(&format!(
            "WorkingDirectory={}",
            word(&folder.display().to_string())
        ));
        if let Some(path) = &self.path {
            line(&format!("Environment={}", word(&format!("PATH={path}"))));
        }
        line(&format!("ExecStart={}", exec.join(" ")));
        line("ExecReload=/bin/kill -HUP $MAINPID");
        // SIGTERM to hotrun alone; it stops its instances, and whatever is left when the
        // time is up gets SIGKILL from systemd.
        line("KillMode=mixed");
        line("KillSignal=SIGTERM");
        line(&format!("TimeoutStopSec={stop}"));
        line("Restart=on-failure");
        line("RestartSec=2");
        line("");
        line("[Install]");
        line("WantedBy=multi-user.target");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_and_words() {
        let table = [
            ("/srv/my app/ecosystem.config.js", "hotrun-my-app.service"),
            ("/srv/shop.v2/ecosystem.config.js", "hotrun-shop.v2.service"),
            ("/ecosystem.config.js", "hotrun-app.service"),
        ];
        for (config, want) in table {
            assert_eq!(unit_name(Path::new(config)), want, "{config}");
        }
        assert_eq!(word("/usr/bin/hotrun"), "/usr/bin/hotrun");
        assert_eq!(word("/srv/my app/e.js"), "\"/srv/my app/e.js\"");
        assert_eq!(word("50%"), "50%%");
    }

    #[test]
    fn the_unit_runs_the_file_with_its_profile_and_stops_within_the_longest_kill_timeout() {
        let unit = Unit {
            hotrun: "/usr/local/bin/hotrun".into(),
            config: "/srv/web/ecosystem.config.js".into(),
            profile: Some("production".into()),
            longest_stop: Duration::from_millis(5100),
            user: Some("deploy".into()),
            path: Some("/usr/local/bin:/usr/bin".into()),
        };
        let text = unit.text();
        for want in [
            "ExecStart=/usr/local/bin/hotrun --config /srv/web/ecosystem.config.js --env production",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "KillMode=mixed",
            "TimeoutStopSec=16",
            "Restart=on-failure",
            "User=deploy",
            "WorkingDirectory=/srv/web",
            "Environment=PATH=/usr/local/bin:/usr/bin",
            "WantedBy=multi-user.target",
        ] {
            assert!(text.lines().any(|l| l == want), "{want}\n{text}");
        }
    }
}

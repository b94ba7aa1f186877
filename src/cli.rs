//! The command line: flags and subcommands (clap derive). No behaviour lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run web apps from a PM2 ecosystem file, in the foreground, with zero-downtime reloads.
#[derive(Debug, Parser)]
#[command(name = "hotrun", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Option<CommandKind>,
}

/// Options every command takes.
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// The ecosystem file. Default: the first of ecosystem.config.js, ecosystem.config.cjs,
    /// ecosystem.config.json, ecosystem.json, ecosystem.config.json5, ecosystem.config.yml,
    /// ecosystem.config.yaml in the current folder.
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The profile to apply: `env_NAME` is merged over `env`.
    #[arg(short, long = "env", global = true, value_name = "NAME")]
    pub env: Option<String>,

    /// Limit the command to these apps (comma-separated names).
    #[arg(long, global = true, value_name = "APP[,APP]", value_delimiter = ',')]
    pub only: Vec<String>,

    /// How output lines are written: `human` (prefixed, coloured) or `json` (one object
    /// per line: time, app, instance, stream, message).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// How often instances' memory is checked against max_memory_restart, in ms.
    #[arg(long, global = true, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(50..))]
    pub memory_interval: u64,

    /// Serve /metrics (Prometheus), /livez, /readyz and /status on this address, e.g.
    /// 127.0.0.1:9615 (off by default; for the runner: hotrun, run, watch, check).
    #[arg(long, global = true, value_name = "ADDR", env = "HOTRUN_HTTP")]
    pub http: Option<String>,

    /// After SIGTERM, keep every instance serving this long (not ready any more) before
    /// stopping them, in ms; over the apps' `shutdown_delay`.
    #[arg(long, global = true, value_name = "MS")]
    pub shutdown_delay: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartupSystem {
    Systemd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum CommandKind {
    /// Run every app in the foreground (the default when no command is given).
    Run,
    /// Print the resolved plan (validates the file). Values of variables whose names look
    /// secret (PASSWORD, SECRET, TOKEN, KEY, ...) are masked.
    Config {
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        /// Show secret-looking values as they are.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Development: run with watching on for every app (its watch paths, or its cwd);
    /// type `rs` + Enter to reload every app.
    Watch {
        /// Run this many instances of each app, whatever the file says.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
        instances: Option<u32>,
        /// Poll for changes instead of using inotify (NFS, some containers).
        #[arg(long)]
        poll: bool,
    },
    /// CI smoke test: start everything, wait until ready, run rolling reloads, stop.
    Check {
        /// How many rolling reloads of every app to run.
        #[arg(long, default_value_t = 1, value_name = "N")]
        reloads: u32,
    },
    /// Ask the running hotrun for a zero-downtime rolling reload (all apps by default).
    Reload {
        /// The apps to reload.
        apps: Vec<String>,
        /// Return at once instead of waiting until the reload is done.
        #[arg(long)]
        no_wait: bool,
        /// Print what a reload would change (configuration re-read), and change nothing.
        #[arg(long, conflicts_with = "no_wait")]
        dry_run: bool,
        /// Replace one instance first and hold it this many milliseconds before the rest
        /// (rolled back if it fails), as the `canary` key does for this reload.
        #[arg(long, value_name = "MS", conflicts_with = "dry_run", value_parser = clap::value_parser!(u64).range(1..))]
        canary: Option<u64>,
    },
    /// Ask the running hotrun to stop, then start apps again (not zero-downtime, as PM2).
    Restart {
        /// The apps to restart.
        apps: Vec<String>,
    },
    /// Ask the running hotrun to stop every instance gracefully and exit.
    Stop,
    /// Show the running hotrun's apps and instances.
    Status {
        /// Print the status as JSON.
        #[arg(long, conflicts_with = "ready")]
        json: bool,
        /// Exit 0 only when every app has all its instances online (for readiness
        /// probes); silent unless --verbose.
        #[arg(long)]
        ready: bool,
        /// With --ready: say why not.
        #[arg(long, requires = "ready")]
        verbose: bool,
    },
    /// List every running hotrun of this user, one line per app (as `pm2 ls` shows every
    /// process wherever it was started).
    Ls,
    /// Follow the running hotrun's reload events (JSON lines with --log-format json).
    Events,
    /// Upgrade the running hotrun to a new binary without restarting an app or closing a
    /// socket: it execs the binary in its own process, which takes every instance over
    /// (SIGUSR2 does the same with hotrun's own path).
    Upgrade {
        /// The new binary (default: the running hotrun's own path, which a package or
        /// `cargo install` replaced).
        #[arg(long, value_name = "PATH")]
        binary: Option<std::path::PathBuf>,
        /// Tests only: the new side refuses the state, so hotrun falls back; given twice,
        /// the old side refuses it too, so hotrun stops.
        #[arg(long, hide = true, action = clap::ArgAction::Count)]
        refuse_state: u8,
    },
    /// Show recent output of the running hotrun's instances, and follow it.
    Logs {
        /// Only this app's lines.
        app: Option<String>,
        /// How many recent lines to show (hotrun keeps the last 1000).
        #[arg(long, default_value_t = 50, value_name = "N")]
        lines: usize,
        /// Keep printing new lines as they come (Ctrl-C to stop).
        #[arg(short, long)]
        follow: bool,
    },
    /// Write a commented ecosystem.config.js for this folder (never overwrites one).
    Init,
    /// Print a boot-time unit that runs this ecosystem file (instead of `pm2 startup` +
    /// `pm2 save`); with --write, install it into /etc/systemd/system.
    Startup {
        /// The init system (systemd).
        #[arg(value_enum)]
        system: StartupSystem,
        /// Install the unit instead of printing it (needs root).
        #[arg(long)]
        write: bool,
    },
    /// Print a shell completion script (e.g. `hotrun completions bash > /etc/bash_completion.d/hotrun`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Internal: the watchdog process that kills every instance if hotrun dies.
    #[command(name = "__guard", hide = true)]
    Guard,
}

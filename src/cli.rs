//! The command line: flags and subcommands (clap derive). No behaviour lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run web apps from a PM2 ecosystem file, in the foreground.
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
    /// ecosystem.config.json, ecosystem.json, ecosystem.config.json5 in the current folder.
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The profile to apply: `env_NAME` is merged over `env`.
    #[arg(short, long = "env", global = true, value_name = "NAME")]
    pub env: Option<String>,

    /// Limit the command to these apps (comma-separated names).
    #[arg(long, global = true, value_name = "APP[,APP]", value_delimiter = ',')]
    pub only: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum CommandKind {
    /// Print the resolved plan (validates the file).
    Config {
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run every app in the foreground (the default when no command is given).
    Run,
    /// Internal: the watchdog process that kills every instance if hotrun dies.
    #[command(name = "__guard", hide = true)]
    Guard,
}

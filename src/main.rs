//! The `hotrun` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

use hotrun::cli::{Cli, CommandKind};
use hotrun::config::{self, LoadOptions};
use hotrun::{exit, logs, process, supervisor};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Some(CommandKind::Guard) => process::guard::run(),
        Some(CommandKind::Config { json }) => show_config(&cli.global, json),
        Some(CommandKind::Run) | None => run(&cli.global),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Loads the plan, printing notes and warnings; on error prints it and gives the exit code.
fn load(global: &hotrun::cli::Global) -> Result<config::Loaded, i32> {
    let cwd = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            logs::say(&format!("cannot read the current directory: {e}"));
            return Err(exit::CONFIG_NOT_FOUND);
        }
    };
    let opts = LoadOptions {
        config: global.config.clone(),
        profile: global.env.clone(),
        only: global.only.clone(),
        cwd,
    };
    match config::load(&opts) {
        Ok(loaded) => {
            for note in &loaded.notes {
                logs::say(note);
            }
            for warning in &loaded.warnings {
                logs::say(&format!("warning: {warning}"));
            }
            Ok(loaded)
        }
        Err(e) => {
            logs::say(&e.to_string());
            Err(e.exit_code())
        }
    }
}

fn show_config(global: &hotrun::cli::Global, json: bool) -> i32 {
    let loaded = match load(global) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if json {
        let text =
            serde_json::to_string_pretty(&loaded.plan.to_json()).expect("a plan always serializes");
        println!("{text}");
    } else {
        let text = config::render_human(&loaded.plan);
        println!("{}", text.trim_end());
    }
    exit::OK
}

fn run(global: &hotrun::cli::Global) -> i32 {
    match load(global) {
        Ok(loaded) => supervisor::run(loaded.plan),
        Err(code) => code,
    }
}
